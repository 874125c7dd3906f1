"""Global and sliding-window attention, dense (padded batch) and over the paged cache.

Both paths reduce to one masked attention in fp32 so the window rule is written once:
key ``s`` is visible to query ``t`` iff ``pos_t - W < pos_s <= pos_t`` (inclusive window).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..interface import PagedAttentionMetadata
from ..plan_cache import PlanCache


def visibility_mask(
    q_positions: torch.Tensor, k_positions: torch.Tensor, k_valid: torch.Tensor, window: int | None
) -> torch.Tensor:
    """``[B, T, S]`` bool: causal (by position), padding-aware, optionally windowed."""
    qp = q_positions[:, :, None]
    kp = k_positions[:, None, :]
    mask = k_valid[:, None, :] & (kp <= qp)
    if window is not None:
        mask &= kp > qp - window
    return mask


def masked_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, scale: float
) -> torch.Tensor:
    """GQA attention with softmax in fp32. Shapes: q ``[B,T,H,D]``, k/v ``[B,S,G,D]``."""
    batch, q_len, n_heads, head_dim = q.shape
    n_kv = k.shape[2]
    group = n_heads // n_kv
    # Rows that see nothing (padding queries) attend everywhere: finite garbage, never NaN.
    mask = mask | ~mask.any(dim=-1, keepdim=True)
    qg = q.float().view(batch, q_len, n_kv, group, head_dim)
    scores = torch.einsum("btkgd,bskd->bkgts", qg, k.float()) * scale
    scores = scores.masked_fill(~mask[:, None, None], float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    out = torch.einsum("bkgts,bskd->btkgd", probs, v.float())
    return out.reshape(batch, q_len, n_heads, head_dim).to(q.dtype)


def dense_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    q_positions: torch.Tensor,
    k_positions: torch.Tensor,
    k_valid: torch.Tensor,
    window: int | None,
    scale: float,
) -> torch.Tensor:
    mask = visibility_mask(q_positions, k_positions, k_valid, window)
    return masked_attention(q, k, v, mask, scale)


def write_paged_cache(
    k: torch.Tensor, v: torch.Tensor, key_cache: torch.Tensor, value_cache: torch.Tensor,
    slot_mapping: torch.Tensor,
) -> None:
    """Scatter new tokens into ``[num_blocks, block_size, G*D]`` caches at flat slot indices."""
    flat_k = key_cache.view(-1, key_cache.shape[-1])
    flat_v = value_cache.view(-1, value_cache.shape[-1])
    flat_k[slot_mapping] = k.reshape(k.shape[0], -1).to(key_cache.dtype)
    flat_v[slot_mapping] = v.reshape(v.shape[0], -1).to(value_cache.dtype)


@dataclass
class GatherPlan:
    """Which cache slots each sequence's visible keys occupy, and the matching mask."""

    slots: torch.Tensor  # int64 [S, max_k]
    q_index: torch.Tensor  # int64 [S, max_q] rows of the flat query batch (padding repeats a row)
    q_valid: torch.Tensor  # bool [S, max_q]
    mask: torch.Tensor  # bool [S, max_q, max_k]


def plan_gather(meta: PagedAttentionMetadata, window: int | None) -> GatherPlan:
    device = meta.cu_seqlens_q.device
    cu = meta.cu_seqlens_q.long()
    q_lens = cu[1:] - cu[:-1]
    ctx = meta.context_lens.long()
    first_q_pos = ctx - q_lens
    # Only the keys some query can see are gathered: for a window, [first_q - W + 1, ctx).
    k_start = (first_q_pos - window + 1).clamp(min=0) if window is not None else torch.zeros_like(ctx)
    max_k = int((ctx - k_start).max())
    max_q = int(q_lens.max())

    k_pos = k_start[:, None] + torch.arange(max_k, device=device)[None, :]
    k_valid = k_pos < ctx[:, None]
    k_pos_safe = torch.where(k_valid, k_pos, k_start[:, None])
    blocks = torch.gather(meta.block_tables.long(), 1, k_pos_safe // meta.block_size)
    slots = blocks * meta.block_size + k_pos_safe % meta.block_size

    q_offsets = torch.arange(max_q, device=device)[None, :]
    q_valid = q_offsets < q_lens[:, None]
    q_index = torch.where(q_valid, cu[:-1, None] + q_offsets, cu[:-1, None])
    mask = visibility_mask(first_q_pos[:, None] + q_offsets, k_pos, k_valid, window)
    return GatherPlan(slots, q_index, q_valid, mask)


_plans: PlanCache[GatherPlan] = PlanCache(plan_gather)


def paged_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_cache: torch.Tensor,
    value_cache: torch.Tensor,
    meta: PagedAttentionMetadata,
    window: int | None,
    scale: float,
) -> torch.Tensor:
    write_paged_cache(k, v, key_cache, value_cache, meta.slot_mapping)
    plan = _plans.get(meta, window)
    n_kv, head_dim = k.shape[1], k.shape[2]
    keys = key_cache.view(-1, n_kv, head_dim)[plan.slots]
    values = value_cache.view(-1, n_kv, head_dim)[plan.slots]
    out = masked_attention(q[plan.q_index], keys, values, plan.mask, scale)
    return out[plan.q_valid]
