"""Width-2 causal convolution on K and V over a varlen batch, with per-slot decode state.

For a chunk ``x[0..T-1]`` with state ``s`` the previous-token sequence is ``[s, x[0..T-2]]``
and afterwards ``s <- x[T-1]`` (architecture.md §2.6): identical to the official code on its
supported path, and exact for chunked prefill, which the official code gets wrong.
"""

from __future__ import annotations

import torch


def _conv_one(
    x: torch.Tensor, weight: torch.Tensor, state: torch.Tensor,
    cu_seqlens: torch.Tensor, state_slots: torch.Tensor,
) -> torch.Tensor:
    starts = cu_seqlens[:-1].long()
    ends = cu_seqlens[1:].long()
    slots = state_slots.long()
    previous = torch.roll(x, shifts=1, dims=0)  # a new tensor, safe to write into
    previous[starts] = state[slots].to(x.dtype)
    # Each product is rounded to the model dtype before the fp32 sum, as the official kernel does.
    w_prev = weight[:, 0].to(x.dtype)[None, :, None]
    w_cur = weight[:, 1].to(x.dtype)[None, :, None]
    out = ((w_prev * previous).float() + (w_cur * x).float()).to(x.dtype)
    state[slots] = x[ends - 1].detach().to(state.dtype)
    return out


def conv_kv(
    k: torch.Tensor,
    v: torch.Tensor,
    conv_k: torch.Tensor,
    conv_v: torch.Tensor,
    state_k: torch.Tensor,
    state_v: torch.Tensor,
    cu_seqlens: torch.Tensor,
    state_slots: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    return (_conv_one(k, conv_k, state_k, cu_seqlens, state_slots),
            _conv_one(v, conv_v, state_v, cu_seqlens, state_slots))
