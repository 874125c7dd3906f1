"""A toy model for MindIE's torch runtime, installed as ``mindie_llm/runtime/models/toy_llm/`` in test trees.

It exists to prove the harness (``mindie_standin.service``) end to end without the Baichuan-M1
adapter: two attention layers whose KV caches are MindIE ``Attention`` holders bound by the runner,
capturable decode (the FIA call MindIE's own full-graph attention makes, with the host length list
that ``graph.update`` refreshes), and MindIE's naming rule (router, config, model by file name).
"""
