"""Which torch_npu operator serves each backend op, from the documented operator limits alone.

Pure decisions, no ``torch_npu`` import: the backend follows them at run time and
``m1-ascend doctor`` prints them for a model geometry without a device. Every limit below is
quoted from ``shared/spec/ascend-npu-ops.md`` (torch_npu / op-plugin documentation); where a
case falls outside them the op runs a composed torch path instead, and the route says why.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

COMPOSED = "composed torch ops"
INT_MAX = 2147483647

# npu_fused_infer_attention_score (FIA)
FIA_DTYPES = (torch.float16, torch.bfloat16)  # query dtypes on A2/A3
FIA_TND_HEAD_DIMS = (128, 192)  # TND without rope: Q/K/V D 128, or 192
FIA_MAX_HEAD_DIM = 512
FIA_MAX_HEADS = 256
FIA_MAX_GQA_RATIO = 64
FIA_MAX_KV_HIDDEN = 65535  # KV_N * D in the (blocks, block_size, H) cache layout
FIA_MAX_BLOCK_SIZE = 512
FIA_PREFILL_BLOCK_MULTIPLE = 128  # paged attention with Q_S > 1
FIA_DECODE_BLOCK_MULTIPLE = 16  # paged attention with Q_S = 1, fp16/bf16
MASK_TEMPLATE_SIZE = 2048  # the "optimised" mask sparse modes 2/3/4 take

# npu_fusion_attention (FlashAttentionScore; has a backward)
FUSION_ATTENTION_MAX_HEAD_DIM = 768
FUSION_ATTENTION_DTYPES = (torch.float16, torch.bfloat16, torch.float32)

# the ConvKv Ascend C operator (kernels/ascendc/conv_kv)
CONV_KV_KERNEL_DTYPES = (torch.float16, torch.bfloat16)

# RoPE, norm, SwiGLU
FUSED_ROPE_HEAD_DIMS = (64, 128)  # npu_apply_rotary_pos_emb on A2/A3
ROTARY_MUL_MAX_HEAD_DIM = 896  # npu_rotary_mul: D < 896 and even
RMS_NORM_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
SWIGLU_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


@dataclass(frozen=True)
class Route:
    """How one op runs: a torch_npu ``kernel`` (with its settings) or ``COMPOSED`` and why."""

    op: str
    kernel: str
    reason: str = ""

    @property
    def fused(self) -> bool:
        return self.kernel != COMPOSED


def _composed(op: str, reason: str) -> Route:
    return Route(op, COMPOSED, reason)


def fia_shape_problem(n_heads: int, n_kv_heads: int, head_dim: int, dtype: torch.dtype) -> str | None:
    """Why FIA cannot take these heads at all (None when it can)."""
    if dtype not in FIA_DTYPES:
        return f"FIA takes fp16/bf16 queries only, got {dtype}"
    if head_dim > FIA_MAX_HEAD_DIM or (head_dim * dtype.itemsize) % 16:
        return f"FIA needs head_dim <= {FIA_MAX_HEAD_DIM} and 16-byte aligned, got {head_dim}"
    if max(n_heads, n_kv_heads) > FIA_MAX_HEADS or n_heads % n_kv_heads:
        return f"FIA needs <= {FIA_MAX_HEADS} heads and whole GQA groups, got {n_heads}/{n_kv_heads}"
    if n_heads // n_kv_heads > FIA_MAX_GQA_RATIO:
        return f"FIA allows a GQA ratio <= {FIA_MAX_GQA_RATIO}, got {n_heads // n_kv_heads}"
    if n_kv_heads * head_dim >= FIA_MAX_KV_HIDDEN:
        return f"FIA's (blocks, block_size, H) cache needs KV heads x head_dim < {FIA_MAX_KV_HIDDEN}"
    return None


def block_size_problem(block_size: int, prefill: bool) -> str | None:
    """Paged FIA block sizes: Q_S > 1 needs a multiple of 128 in [128, 512]; Q_S = 1 a multiple of 16."""
    multiple = FIA_PREFILL_BLOCK_MULTIPLE if prefill else FIA_DECODE_BLOCK_MULTIPLE
    if block_size <= 0 or block_size > FIA_MAX_BLOCK_SIZE or block_size % multiple:
        kind = "prefill (Q_S > 1)" if prefill else "decode (Q_S = 1)"
        return f"paged FIA {kind} needs block_size a multiple of {multiple} up to {FIA_MAX_BLOCK_SIZE}, got {block_size}"
    return None


def uses_tnd(head_dim: int, allow_tnd: bool) -> bool:
    """TND (varlen, one call for prefill and decode) is only documented for head_dim 128/192."""
    return allow_tnd and head_dim in FIA_TND_HEAD_DIMS


def paged_attention_route(n_heads: int, n_kv_heads: int, head_dim: int, dtype: torch.dtype, block_size: int,
                          window: int | None, prefill: bool, allow_tnd: bool = True,
                          cache_dtype: torch.dtype | None = None) -> Route:
    """FIA over the paged cache, or the composed path when a documented limit is exceeded."""
    op = "paged_attention"
    problem = fia_shape_problem(n_heads, n_kv_heads, head_dim, dtype) or block_size_problem(block_size, prefill)
    if cache_dtype not in (None, dtype):
        problem = problem or f"FIA reads caches in the query dtype {dtype}, the cache is {cache_dtype}"
    if problem:
        return _composed(op, problem)
    causal = "sparse_mode=3 (causal)" if window is None else f"sparse_mode=4, pre_tokens={window - 1}, next_tokens=0"
    if uses_tnd(head_dim, allow_tnd):
        return Route(op, f"npu_fused_infer_attention_score[TND, {causal}]")
    if not prefill:
        # Q_S = 1 outside TND ignores sparse_mode/pre/next: the window comes from a trimmed table + pse_shift.
        how = "window via trimmed block table + pse_shift" if window is not None else "sparse_mode=0"
        return Route(op, f"npu_fused_infer_attention_score[BSND, Q_S=1, {how}]")
    return Route(op, f"npu_fused_infer_attention_score[BSND padded per sequence, {causal}]")


def dense_attention_route(n_heads: int, n_kv_heads: int, head_dim: int, dtype: torch.dtype) -> Route:
    """Padded-batch attention (HF path, training) through FlashAttentionScore with an explicit mask."""
    op = "dense_attention"
    if dtype not in FUSION_ATTENTION_DTYPES:
        return _composed(op, f"npu_fusion_attention takes fp16/bf16/fp32, got {dtype}")
    if head_dim > FUSION_ATTENTION_MAX_HEAD_DIM or n_heads % n_kv_heads or max(n_heads, n_kv_heads) > FIA_MAX_HEADS:
        return _composed(op, f"npu_fusion_attention needs head_dim <= {FUSION_ATTENTION_MAX_HEAD_DIM} and whole "
                             f"GQA groups, got {n_heads}/{n_kv_heads} x {head_dim}")
    return Route(op, "npu_fusion_attention[BSND, explicit bool mask]")


def rotary_route(head_dim: int) -> Route:
    """Fused q+k RoPE for D 64/128; npu_rotary_mul (per tensor) below 896; composed otherwise."""
    if head_dim in FUSED_ROPE_HEAD_DIMS:
        return Route("rotary", "npu_apply_rotary_pos_emb[BSND, half, fp32]")
    if head_dim % 2 == 0 and head_dim < ROTARY_MUL_MAX_HEAD_DIM:
        return Route("rotary", "npu_rotary_mul[BSND, half, fp32]")
    return _composed("rotary", f"no fused RoPE op takes head_dim {head_dim}")


def rms_norm_route(x_dtype: torch.dtype, weight_dtype: torch.dtype) -> Route:
    """npu_rms_norm rounds once into x's dtype; the reference's dtype rule holds when both match."""
    if x_dtype != weight_dtype or x_dtype not in RMS_NORM_DTYPES:
        return _composed("rms_norm", f"npu_rms_norm is used for matching fp16/bf16/fp32 x and weight, "
                                     f"got {x_dtype}/{weight_dtype}")
    return Route("rms_norm", "npu_rms_norm")


def conv_kv_kernel_route(dtype: torch.dtype) -> Route:
    """The ConvKv Ascend C kernel is built for the model dtypes fp16/bf16."""
    if dtype not in CONV_KV_KERNEL_DTYPES:
        return _composed("conv_kv", f"the ConvKv Ascend C kernel takes fp16/bf16, got {dtype}")
    return Route("conv_kv", "torch.ops.m1_ascend.conv_kv (Ascend C)")


def silu_and_mul_route(dtype: torch.dtype) -> Route:
    if dtype not in SWIGLU_DTYPES:
        return _composed("silu_and_mul", f"npu_swiglu takes fp16/bf16/fp32, got {dtype}")
    return Route("silu_and_mul", "npu_swiglu (gate first)")
