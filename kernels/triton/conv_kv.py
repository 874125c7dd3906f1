"""Fused conv-K/V in Triton: the varlen width-2 causal conv of ``reference/conv_kv.py`` in one launch.

Portable Triton only (no triton-ascend extensions), so the same source runs natively on a GPU,
through triton-ascend on an NPU, and on CPU tensors under ``TRITON_INTERPRET=1`` (set before
this module is imported). All arithmetic is fp32 after the loads: the interpreter cannot do
bf16 arithmetic, and the rounding points are made explicit instead (each product and the
state are rounded to the model dtype, as the reference does).

Grid ``(sequences, channel blocks)``. A program walks its sequence in ``BLOCK_T`` chunks for
both K and V, reads its slot's state before the first token and writes the sequence's last raw
token back at the end; one program owns each (slot, channels) pair, so there is no race on the
state. A token's previous row is the row above it, except for a sequence's first token, which
takes the state: exact whether the sequence is a whole prompt, a prefill chunk or one decode token.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _conv_one(x_ptr, w_ptr, state_ptr, out_ptr, start, end, slot, cols, col_mask,
              stride_xt, stride_xg, stride_xd, stride_ss, stride_sg, stride_sd,
              CHANNELS: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_T: tl.constexpr):
    dtype = x_ptr.dtype.element_ty
    heads = cols // HEAD_DIM
    x_cols = heads * stride_xg + (cols % HEAD_DIM) * stride_xd
    s_cols = slot * stride_ss + heads * stride_sg + (cols % HEAD_DIM) * stride_sd
    w_prev = tl.load(w_ptr + heads * 2, mask=col_mask, other=0.0).to(dtype).to(tl.float32)
    w_cur = tl.load(w_ptr + heads * 2 + 1, mask=col_mask, other=0.0).to(dtype).to(tl.float32)
    state = tl.load(state_ptr + s_cols, mask=col_mask, other=0.0).to(dtype).to(tl.float32)
    for t0 in range(start, end, BLOCK_T):
        rows = t0 + tl.arange(0, BLOCK_T)
        mask = (rows < end)[:, None] & col_mask[None, :]
        rows64 = rows.to(tl.int64)[:, None]
        x = tl.load(x_ptr + rows64 * stride_xt + x_cols[None, :], mask=mask, other=0.0).to(tl.float32)
        above = tl.load(x_ptr + (rows64 - 1) * stride_xt + x_cols[None, :],
                        mask=mask & (rows > start)[:, None], other=0.0).to(tl.float32)
        previous = tl.where((rows == start)[:, None], state[None, :], above)
        y = (w_prev[None, :] * previous).to(dtype).to(tl.float32) + (w_cur[None, :] * x).to(dtype).to(tl.float32)
        tl.store(out_ptr + rows64 * CHANNELS + cols[None, :], y.to(dtype), mask=mask)
    last = tl.load(x_ptr + (end - 1).to(tl.int64) * stride_xt + x_cols, mask=col_mask)
    tl.store(state_ptr + s_cols, last.to(state_ptr.dtype.element_ty), mask=col_mask)


@triton.jit
def _conv_kv_kernel(k_ptr, v_ptr, wk_ptr, wv_ptr, sk_ptr, sv_ptr, ok_ptr, ov_ptr, cu_ptr, slots_ptr,
                    stride_kt, stride_kg, stride_kd, stride_vt, stride_vg, stride_vd,
                    stride_sks, stride_skg, stride_skd, stride_svs, stride_svg, stride_svd,
                    CHANNELS: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_C: tl.constexpr):
    seq = tl.program_id(0)
    cols = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    col_mask = cols < CHANNELS
    start = tl.load(cu_ptr + seq)
    end = tl.load(cu_ptr + seq + 1)
    slot = tl.load(slots_ptr + seq).to(tl.int64)
    if end > start:  # an empty sequence leaves its state untouched
        _conv_one(k_ptr, wk_ptr, sk_ptr, ok_ptr, start, end, slot, cols, col_mask, stride_kt, stride_kg, stride_kd,
                  stride_sks, stride_skg, stride_skd, CHANNELS, HEAD_DIM, BLOCK_T)
        _conv_one(v_ptr, wv_ptr, sv_ptr, ov_ptr, start, end, slot, cols, col_mask, stride_vt, stride_vg, stride_vd,
                  stride_svs, stride_svg, stride_svd, CHANNELS, HEAD_DIM, BLOCK_T)


def conv_kv(k: torch.Tensor, v: torch.Tensor, conv_k: torch.Tensor, conv_v: torch.Tensor, state_k: torch.Tensor,
            state_v: torch.Tensor, cu_seqlens: torch.Tensor, state_slots: torch.Tensor, block_t: int = 64,
            block_c: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """Same contract as ``KernelBackend.conv_kv``; ``k``/``v`` may be strided views of the packed projection.

    ``block_t``/``block_c`` (powers of two) set the tile: tests use large tiles so the
    interpreter runs few programs.
    """
    n_tokens, n_kv, head_dim = k.shape
    if v.shape != k.shape or state_k.shape[1:] != k.shape[1:] or state_v.shape != state_k.shape:
        raise ValueError(f"conv_kv: shapes disagree: k {tuple(k.shape)}, v {tuple(v.shape)}, "
                         f"state {tuple(state_k.shape)}/{tuple(state_v.shape)}")
    if conv_k.shape != (n_kv, 2) or conv_v.shape != (n_kv, 2):
        raise ValueError(f"conv_kv: conv weights must be [{n_kv}, 2], got {tuple(conv_k.shape)}/{tuple(conv_v.shape)}")
    channels = n_kv * head_dim
    out_k = torch.empty((n_tokens, n_kv, head_dim), dtype=k.dtype, device=k.device)
    out_v = torch.empty((n_tokens, n_kv, head_dim), dtype=v.dtype, device=v.device)
    num_seqs = cu_seqlens.shape[0] - 1
    if n_tokens == 0 or num_seqs == 0:
        return out_k, out_v
    block_c = min(block_c, triton.next_power_of_2(channels))
    grid = (num_seqs, triton.cdiv(channels, block_c))
    _conv_kv_kernel[grid](
        k, v, conv_k.contiguous(), conv_v.contiguous(), state_k, state_v, out_k, out_v,
        cu_seqlens.contiguous(), state_slots.contiguous(),
        *k.stride(), *v.stride(), *state_k.stride(), *state_v.stride(),
        CHANNELS=channels, HEAD_DIM=head_dim, BLOCK_T=block_t, BLOCK_C=block_c)
    return out_k, out_v
