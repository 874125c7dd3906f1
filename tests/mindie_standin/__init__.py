"""A stand-in for MindIE-LLM's Python runtime (``mindie_llm/``), rebuilt from its open source, and tools around it.

- ``mindie_llm/``: the stand-in package (see its docstring: commit, scope, deviations);
- ``manifest.json`` / ``record_manifest.py``: names, bases and signatures recorded from the real
  tree, which ``tests/test_mindie_standin_manifest.py`` holds the stand-in to;
- ``fixtures``: temporary MindIE installs for a test, and importing them;
- ``service``: one MindIE process -- start-up, warm-up, capture, then serving steps as the TG
  builds them -- for tests that drive a model through MindIE;
- ``toy_llm/`` and ``toy``: a small capturable model and its dense reference, to test the harness.
"""
