"""Norm, RoPE, SwiGLU and paged-cache writes of torch_npu, from their documented semantics.

Limits enforced as documented for Atlas A2/A3 (shared/spec/ascend-npu-ops.md §1.5, §1.6):
``npu_apply_rotary_pos_emb`` only takes head_dim 64/128 and updates q/k in place;
``npu_rotary_mul`` needs an even head_dim < 896; ``npu_rms_norm`` returns ``(y, fp32 rstd)``;
``npu_swiglu`` activates the *first* half; ``npu_scatter_pa_kv_cache`` defaults to the NZ cache
layout, which the emulator refuses so a caller that forgets ``cache_mode="Norm"`` fails here, and
skips slots below 0 as the kernel source does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._checks import contiguous, no_extras, require

RMS_NORM_PAIRS = {(torch.float16, torch.float32), (torch.bfloat16, torch.float32), (torch.float16, torch.float16),
                  (torch.bfloat16, torch.bfloat16), (torch.float32, torch.float32)}
FLOATS = (torch.float16, torch.bfloat16, torch.float32)


def npu_rms_norm(x: torch.Tensor, gamma: torch.Tensor, epsilon: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    op = "npu_rms_norm"
    require((x.dtype, gamma.dtype) in RMS_NORM_PAIRS, op, f"unsupported x/gamma dtypes {x.dtype}/{gamma.dtype}")
    require(x.shape[-gamma.dim():] == gamma.shape, op, "gamma must match the trailing dims of x")
    dims = tuple(range(x.dim() - gamma.dim(), x.dim()))
    rstd = torch.rsqrt(x.float().pow(2).mean(dim=dims, keepdim=True) + epsilon)
    return (x.float() * rstd * gamma.float()).to(x.dtype), rstd


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def npu_rotary_mul(input: torch.Tensor, r1: torch.Tensor, r2: torch.Tensor, rotary_mode: str = "half",
                   rotate: torch.Tensor | None = None) -> torch.Tensor:
    op = "npu_rotary_mul"
    no_extras(op, {"rotate": rotate})
    if rotary_mode != "half":
        raise NotImplementedError(f"{op}: the emulator models rotary_mode='half' only")
    require(input.dim() == 4 and r1.dim() == 4 and r1.shape == r2.shape, op, "input, r1, r2 must be 4-D (r1 == r2 shape)")
    require(input.dtype in FLOATS and r1.dtype == r2.dtype == input.dtype, op, "input/r1/r2 must share fp16/bf16/fp32")
    head_dim = input.shape[-1]
    require(head_dim % 2 == 0 and head_dim < 896, op, f"head_dim must be even and < 896, got {head_dim}")
    require(r1.shape[-1] == head_dim and torch.broadcast_shapes(r1.shape, input.shape) == input.shape, op,
            f"r1 {tuple(r1.shape)} does not broadcast to input {tuple(input.shape)}")
    x = input.float()
    return (x * r1.float() + _rotate_half(x) * r2.float()).to(input.dtype)


def npu_apply_rotary_pos_emb(query: torch.Tensor, key: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                             layout: str = "BSND", rotary_mode: str = "half") -> tuple[torch.Tensor, torch.Tensor]:
    op = "npu_apply_rotary_pos_emb"
    if rotary_mode != "half" or layout != "BSND":
        raise NotImplementedError(f"{op}: the emulator models layout='BSND', rotary_mode='half' only")
    require(query.dim() == key.dim() == 4, op, "BSND query/key must be 4-D")
    head_dim = query.shape[-1]
    require(head_dim in (64, 128) and key.shape[-1] == head_dim, op, f"A2/A3 accept head_dim 64 or 128, got {head_dim}")
    require(query.dtype in FLOATS and key.dtype == cos.dtype == sin.dtype == query.dtype, op,
            "query/key/cos/sin must share one fp16/bf16/fp32 dtype")
    expected = (query.shape[0], query.shape[1], 1, head_dim)
    require(tuple(cos.shape) == expected and tuple(sin.shape) == expected, op,
            f"cos/sin must be (B, S, 1, D) = {expected}, got {tuple(cos.shape)}")
    require(key.shape[:2] == query.shape[:2], op, "query and key must share B and S")
    for x in (query, key):
        x32 = x.float()
        x.copy_((x32 * cos.float() + _rotate_half(x32) * sin.float()).to(x.dtype))
    return query, key


def npu_swiglu(input: torch.Tensor, dim: int = -1) -> torch.Tensor:
    op = "npu_swiglu"
    require(input.dtype in FLOATS, op, f"unsupported dtype {input.dtype}")
    require(input.shape[dim] % 2 == 0, op, f"the split dim must have even size, got {input.shape[dim]}")
    first, second = input.float().chunk(2, dim=dim)
    return (F.silu(first) * second).to(input.dtype)


def npu_scatter_pa_kv_cache(key: torch.Tensor, value: torch.Tensor, key_cache: torch.Tensor, value_cache: torch.Tensor,
                            slot_mapping: torch.Tensor, *, compress_lens: torch.Tensor | None = None,
                            compress_seq_offsets: torch.Tensor | None = None, seq_lens: torch.Tensor | None = None,
                            cache_mode: str = "PA_NZ") -> None:
    op = "npu_scatter_pa_kv_cache"
    no_extras(op, {"compress_lens": compress_lens, "compress_seq_offsets": compress_seq_offsets, "seq_lens": seq_lens})
    if cache_mode != "Norm":
        raise NotImplementedError(f"{op}: cache_mode={cache_mode!r} writes the FRACTAL_NZ layout; "
                                  "the ND caches need cache_mode='Norm'")
    contiguous(op, key=key, value=value, key_cache=key_cache, value_cache=value_cache)
    require(key.dim() == 3 and value.dim() == 3, op, "key/value must be [tokens, heads, head_size]")
    require(key_cache.dim() == 4 and value_cache.dim() == 4, op, "Norm caches must be [blocks, block_size, heads, head_size]")
    require(key_cache.shape[2:] == key.shape[1:] and value_cache.shape[2:] == value.shape[1:], op,
            "cache heads/head_size differ from key/value")
    require(key.dtype == key_cache.dtype and value.dtype == value_cache.dtype, op, "key/value dtype must match the caches")
    require(slot_mapping.dtype in (torch.int32, torch.int64) and slot_mapping.dim() == 1
            and slot_mapping.shape[0] == key.shape[0], op, "slot_mapping must be 1-D int32/int64, one slot per token")
    capacity = key_cache.shape[0] * key_cache.shape[1]
    slots = slot_mapping.long()
    # The kernel skips slots < 0 (CANN ops source, hicann/ops-transformer scatter_pa_kv_cache_normal.h, per
    # shared/spec/ascend-npu-ops.md's 2026-11-30 addendum; its doc asks for [0, N-1]): padding rows.
    written = slots >= 0
    slots = slots[written]
    require(bool((slots < capacity).all()), op, f"slots must lie in [0, {capacity - 1}] (or be < 0: skipped)")
    require(slots.unique().numel() == slots.numel(), op, "slots must be unique")
    key_cache.view(capacity, *key_cache.shape[2:])[slots] = key[written]
    value_cache.view(capacity, *value_cache.shape[2:])[slots] = value[written]
