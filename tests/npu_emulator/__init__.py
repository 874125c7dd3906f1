"""A stand-in ``torch_npu`` for CPU machines: the operators our NPU backend calls, in plain torch.

``build_module()`` returns a fresh module object; tests put it in ``sys.modules["torch_npu"]``
(the ``torch_npu_emulator`` fixture in ``npu_emulator.fixtures``) so the backend's lazy
``import torch_npu`` finds it. "NPU" tensors are CPU tensors: the backend is built with
``device="cpu"``, nothing else in it knows it is being emulated.
"""

from __future__ import annotations

import importlib.machinery
import types

from .attention import npu_fused_infer_attention_score, npu_fusion_attention, template_mask
from .ops import npu_apply_rotary_pos_emb, npu_rms_norm, npu_rotary_mul, npu_scatter_pa_kv_cache, npu_swiglu

EMULATED_DEVICE_NAME = "Ascend910B (emulated on CPU)"


def _device_namespace() -> types.ModuleType:
    npu = types.ModuleType("torch_npu.npu")
    npu.is_available = lambda: True
    npu.device_count = lambda: 1
    npu.current_device = lambda: 0
    npu.get_device_name = lambda index=0: EMULATED_DEVICE_NAME
    npu.synchronize = lambda device=None: None
    return npu


def build_module() -> types.ModuleType:
    module = types.ModuleType("torch_npu")
    module.__spec__ = importlib.machinery.ModuleSpec("torch_npu", loader=None)
    module.__version__ = "emulated"
    module.npu = _device_namespace()
    for op in (npu_fused_infer_attention_score, npu_fusion_attention, npu_rms_norm, npu_rotary_mul,
               npu_apply_rotary_pos_emb, npu_swiglu, npu_scatter_pa_kv_cache):
        setattr(module, op.__name__, op)
    return module


__all__ = ["EMULATED_DEVICE_NAME", "build_module", "template_mask"]
