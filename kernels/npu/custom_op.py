"""``torch.ops.m1_ascend.conv_kv``: one operator name for the fused conv-K/V on every device.

The schema, a fake (meta) implementation and a CPU kernel (the reference) are registered
here, so the operator and its in-place state annotations work and are tested anywhere. The
Ascend kernel comes from the Ascend C project in ``kernels/ascendc/conv_kv``: its build
installs the Python extension ``m1_ascend_ops``, whose ``TORCH_LIBRARY_IMPL(m1_ascend,
PrivateUse1)`` adds the NPU kernel for this same schema. Importing this module never imports
``torch_npu``; loading the extension (only present on CANN hosts) does.
"""

from __future__ import annotations

import importlib
import importlib.util

import torch

from ..library import register_fake
from ..reference.conv_kv import conv_kv as reference_conv_kv

QUALNAME = "m1_ascend::conv_kv"
SCHEMA = ("conv_kv(Tensor k, Tensor v, Tensor conv_k, Tensor conv_v, Tensor(a!) state_k, Tensor(b!) state_v, "
          "Tensor cu_seqlens, Tensor state_slots) -> (Tensor, Tensor)")
EXTENSION = "m1_ascend_ops"

_library = torch.library.Library("m1_ascend", "FRAGMENT")
_library.define(SCHEMA)
_library.impl("conv_kv", reference_conv_kv, "CPU")


def _conv_kv_fake(k: torch.Tensor, v: torch.Tensor, conv_k: torch.Tensor, conv_v: torch.Tensor,
                  state_k: torch.Tensor, state_v: torch.Tensor, cu_seqlens: torch.Tensor,
                  state_slots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return k.new_empty(k.shape), v.new_empty(v.shape)


register_fake(QUALNAME, _library)(_conv_kv_fake)


def load_extension() -> str | None:
    """Import the Ascend kernel's extension if installed; returns why not, or None on success."""
    if importlib.util.find_spec(EXTENSION) is None:
        return f"the '{EXTENSION}' extension is not installed (build kernels/ascendc/conv_kv on a CANN host)"
    try:
        importlib.import_module(EXTENSION)
    except Exception as exc:  # a broken CANN or vendor install must not break the composed path
        return f"'{EXTENSION}' is installed but failed to load: {exc}"
    return None


def npu_kernel_problem() -> str | None:
    """Why ``m1_ascend::conv_kv`` has no Ascend (PrivateUse1) kernel, or None when it has one."""
    problem = load_extension()
    if problem is None and not torch._C._dispatch_has_kernel_for_dispatch_key(QUALNAME, "PrivateUse1"):
        problem = f"'{EXTENSION}' loaded but registered no NPU kernel for {QUALNAME}"
    return problem
