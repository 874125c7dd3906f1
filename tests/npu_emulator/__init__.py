"""A stand-in ``torch_npu`` for CPU machines: the operators our NPU backend calls, in plain torch.

``build_module()`` returns a fresh module object; tests put it in ``sys.modules["torch_npu"]``
(the ``torch_npu_emulator`` fixture in ``npu_emulator.fixtures``) so the backend's lazy
``import torch_npu`` finds it. "NPU" tensors are CPU tensors: the backend is built with
``device="cpu"``, nothing else in it knows it is being emulated.

The operators are registered under torch_npu 2.13.0's real schemas (``registry.py``) and
``torch_npu.npu`` carries the ACL-graph API (``graphs.py``): capture, replay and ``update`` with
the semantics of the real package (``torch_npu_facts.py`` records what was read from its wheel).
"""

from __future__ import annotations

import importlib.machinery
import types

from . import graphs, registry
from .attention import template_mask

EMULATED_DEVICE_NAME = "Ascend910B (emulated on CPU)"


def _device_namespace() -> types.ModuleType:
    npu = types.ModuleType("torch_npu.npu")
    npu.is_available = lambda: True
    npu.device_count = lambda: 1
    npu.current_device = lambda: 0
    # Signatures of torch_npu/npu/__init__.py (2.13.0): get_device_name(device_name=None) l.535,
    # mem_get_info(device=None) -> (free, total) l.550; 64 GiB stands for a 910B's HBM.
    npu.get_device_name = lambda device_name=None: EMULATED_DEVICE_NAME
    npu.mem_get_info = lambda device=None: (64 * 2**30, 64 * 2**30)
    for name in ("NPUGraph", "graph", "graph_pool_handle", "is_current_stream_capturing", "synchronize", "Stream",
                 "current_stream", "stream"):
        setattr(npu, name, getattr(graphs, name))
    return npu


def build_module() -> types.ModuleType:
    module = types.ModuleType("torch_npu")
    module.__spec__ = importlib.machinery.ModuleSpec("torch_npu", loader=None)
    module.__version__ = "emulated"
    module.npu = _device_namespace()
    registry.install(module)
    return module


__all__ = ["EMULATED_DEVICE_NAME", "build_module", "template_mask"]
