"""A stand-in for the parts of MindIE-LLM's Python runtime the Baichuan-M1 adapter touches.

``mindie_llm/`` mirrors the public module paths, class names and signatures of Ascend/MindIE-LLM
(3.1, ``mindie_llm/runtime``); bodies keep only the behaviour the adapter relies on (model discovery,
the router's lazy properties, cache binding, the forward context, the leaf-module weight loader).
Tests copy it into a temporary MindIE-like tree (``fixtures.mindie_tree``); it never installs anywhere.
"""
