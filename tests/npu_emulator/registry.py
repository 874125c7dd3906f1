"""The emulated operators registered as dispatcher ops under torch_npu's real schemas (``torch.ops.npu``).

Going through the dispatcher is what makes the emulator bind like the real package: unknown
keywords or wrong types raise ``RuntimeError`` ("failed to match any schema"), ``SymInt[]?``
arguments accept 1-D integer tensors, keyword-only defaults are dropped before the kernel sees
them, and a ``TorchDispatchMode`` (the graph capture of ``graphs.py``) sees each operator as one
op, as torch_npu's own graph capture does. Registered once per process; ``torch_npu.<name>`` is
``torch.ops.npu.<name>`` as in ``torch_npu/utils/custom_ops.py``.
"""

from __future__ import annotations

from types import ModuleType

import torch

from . import attention, ops
from ._checks import require
from .torch_npu_facts import SCHEMAS

FIA = "npu_fused_infer_attention_score"
# The CPU key keeps an op whole for dispatch modes; FlashAttentionScore is registered as a composite
# so autograd differentiates through its maths (the real op has a backward; training uses it).
CPU_KERNELS = {
    FIA: attention.npu_fused_infer_attention_score,
    "npu_scatter_pa_kv_cache": ops.npu_scatter_pa_kv_cache,
    "npu_apply_rotary_pos_emb": ops.npu_apply_rotary_pos_emb,
    "npu_rotary_mul": ops.npu_rotary_mul,
    "npu_rms_norm": ops.npu_rms_norm,
    "npu_swiglu": ops.npu_swiglu,
}
COMPOSITE_KERNELS = {"npu_fusion_attention": attention.npu_fusion_attention}
PUBLIC = (*CPU_KERNELS, *COMPOSITE_KERNELS, "_npu_fused_infer_attention_score_get_max_workspace",
          "_npu_fused_infer_attention_score_infer_output")


def _fia_out(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, *, workspace: torch.Tensor | None = None,
             out: list[torch.Tensor], **kwargs: object) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``.out`` form graph capture swaps in: results written into the caller's buffers."""
    require(len(out) == 2, FIA, "out must be [attention_out, softmax_lse]")
    result, lse = attention.npu_fused_infer_attention_score(query, key, value, **kwargs)
    require(out[0].shape == result.shape, FIA, f"attention_out is {tuple(out[0].shape)}, the result {tuple(result.shape)}")
    out[0].copy_(result)
    out[1].copy_(lse)
    return out[0], out[1]


def _max_workspace(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, **kwargs: object) -> torch.Tensor:
    """Stands for CANN's max-size workspace; the emulator's kernels need none."""
    return query.new_empty(1)


def _infer_output(query: torch.Tensor, value: torch.Tensor, *, input_layout: str = "BSH",
                  quant_scale2: torch.Tensor | None = None, block_table: torch.Tensor | None = None,
                  num_heads: int = 1, num_key_value_heads: int = 0, softmax_lse_flag: bool = False,
                  query_rope: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Empty outputs shaped as FIA would return them for these arguments.

    Follows the meta function of FIA in ``torch_npu/op_plugin/meta/_meta_registrations.py``
    (``npu_fused_infer_attention_score_forward``, l.2042): the query's shape with the value head dim,
    BSH packing heads into the last dim; an empty lse (shape [0]) when ``softmax_lse_flag`` is off.
    """
    n_kv = num_key_value_heads or num_heads
    packed = value.dim() == 3 and (block_table is not None or input_layout == "BSH")
    head_dim_v = value.shape[-1] // n_kv if packed else value.shape[-1]
    if input_layout == "BSH":
        shape = (*query.shape[:2], num_heads * head_dim_v)
    else:  # TND [T, N, D], BSND [B, S, N, D], BNSD [B, N, S, D]: only the last dim changes
        shape = (*query.shape[:-1], head_dim_v)
    return query.new_empty(shape), torch.empty(0, dtype=torch.float32, device=query.device)


def _define() -> torch.library.Library:
    library = torch.library.Library("npu", "DEF")
    for schema in SCHEMAS.values():
        library.define(schema)
    for name, kernel in CPU_KERNELS.items():
        library.impl(name, kernel, "CPU")
    for name, kernel in COMPOSITE_KERNELS.items():
        library.impl(name, kernel, "CompositeImplicitAutograd")
    library.impl(f"{FIA}.out", _fia_out, "CPU")
    library.impl("_npu_fused_infer_attention_score_get_max_workspace", _max_workspace, "CPU")
    library.impl("_npu_fused_infer_attention_score_infer_output", _infer_output, "CPU")
    return library


_LIBRARY: torch.library.Library | None = None


def install(module: ModuleType) -> None:
    """Put the registered ops on an emulated ``torch_npu`` module (registering them on first use)."""
    global _LIBRARY
    if _LIBRARY is None:
        _LIBRARY = _define()
    for name in PUBLIC:
        setattr(module, name, getattr(torch.ops.npu, name))
