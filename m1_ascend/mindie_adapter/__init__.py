"""Baichuan-M1 as a model of MindIE-LLM's torch runtime (``backendType: "torch"``).

MindIE finds a model by folder: for ``model_type`` ``baichuan_m1`` it imports
``mindie_llm.runtime.models.baichuan_m1.router_baichuan_m1`` and instantiates ``BaichuanM1Router``.
``m1-ascend mindie-adapter install`` writes that folder as thin shims that import the modules of
this package, so the network itself stays the one definition in ``m1_ascend.modeling``.

Only ``geometry``, ``context`` and ``install`` import without MindIE; ``config``, ``router``,
``input_builder`` and ``model`` subclass MindIE's base classes and load only inside MindIE.
"""

MODEL_TYPE = "baichuan_m1"
# Bumped whenever a shim target below moves; installed shims refuse to load against another value.
ADAPTER_API = 1
