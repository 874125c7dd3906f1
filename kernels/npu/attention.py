"""Attention on Ascend: FIA over the paged cache, FlashAttentionScore for padded batches.

Paged attention follows the documented operator limits (see ``support.py``):

- head_dim 128/192 (M1's sliding-window layers): one TND call for prefill chunks and decode
  tokens together, ``sparse_mode=4, pre_tokens=W-1, next_tokens=0`` (``pre_tokens`` excludes
  the query itself, M1's window of W includes it);
- other head dims (M1's global layers, 256): BSND with queries padded per sequence and
  ``sparse_mode=3``; a decode-only batch is one query per sequence (Q_S = 1), where FIA ignores
  sparse_mode/pre/next, so a window comes from the trimmed block table plus a per-head
  ``pse_shift`` that hides the few keys of the first block that fall before the window;
- windowed layers only ever pass FIA the blocks that overlap the window, so stale table
  entries for evicted blocks are never read.

FIA wants host ``int[]`` lengths. Callers that know them on the host pass them in the metadata's
``host_lengths`` with the table rows FIA should read (a decode step captured into an ACL graph
must: a capture cannot read device tensors, and the lengths are then refreshed at replay through
the graph-update protocol); otherwise they are read from the step's metadata once and reused by
every layer of the step. Under capture only TND (windowed, head_dim 128) and Q_S = 1 BSND
(global) calls are used: the ``pse_shift`` window of BSND decode is built from host data.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass
from itertools import pairwise
from types import ModuleType

import torch

from ..interface import PagedAttentionMetadata
from ..reference.attention import visibility_mask
from .support import MASK_TEMPLATE_SIZE, uses_tnd

# Added to the scores of keys before the window: exp() of it underflows to exactly 0 in fp32,
# whether the kernel adds pse_shift before or after scaling, and it is finite in fp16/bf16.
WINDOW_BIAS = -10000.0


@dataclass
class PagedPlan:
    """Host-side lengths and the block table FIA reads, for one step and one window.

    Built from the caller's ``host_lengths`` when given (nothing read from the device, so a decode
    step can be captured into an ACL graph), else read back from the metadata once per step.
    """

    q_lens: list[int]
    cu_q: list[int]  # cumulative query ends, TND's actual_seq_lengths
    kv_lens: list[int]  # keys per sequence from its table row's first block on
    window_starts: list[int]  # first key inside the window, in the row's coordinates
    block_table: torch.Tensor  # int32 [S, blocks]

    @property
    def max_q(self) -> int:
        return max(self.q_lens)

    @functools.cached_property
    def padded_rows(self) -> tuple[torch.Tensor, torch.Tensor]:
        """For BSND prefill: the flat token of each padded query row (clamped) and which rows are real.

        Made on first use, so once per step for every layer, and never for decode (nothing to capture).
        """
        device = self.block_table.device
        q_lens = torch.tensor(self.q_lens, device=device)[:, None]
        starts = torch.tensor([0, *self.cu_q[:-1]], device=device)[:, None]
        offsets = torch.arange(self.max_q, device=device)[None, :]
        valid = offsets < q_lens
        return torch.where(valid, starts + offsets, starts), valid


def _window_starts(kv_lens: list[int], window: int | None) -> list[int]:
    return [max(0, n - window) if window else 0 for n in kv_lens]


def plan_paged(meta: PagedAttentionMetadata, window: int | None) -> PagedPlan:
    host = meta.host_lengths
    if host is not None:  # the caller's lengths and table rows, used as they are
        cu = list(itertools.accumulate(host.query_lens))
        return PagedPlan(host.query_lens, cu, host.kv_lens, _window_starts(host.kv_lens, window), meta.block_tables)
    cu = [int(x) for x in meta.cu_seqlens_q.tolist()]
    ctx = [int(x) for x in meta.context_lens.tolist()]
    q_lens = [b - a for a, b in pairwise(cu)]
    bs = meta.block_size
    # Windowed layers read only the blocks that overlap some query's window: rows start there.
    first_block = [max(0, c - q - window + 1) // bs if window else 0 for c, q in zip(ctx, q_lens, strict=True)]
    kv_lens = [c - f * bs for c, f in zip(ctx, first_block, strict=True)]
    tables = meta.block_tables
    if any(first_block):
        width = max(-(-n // bs) for n in kv_lens)
        columns = torch.tensor(first_block, device=tables.device)[:, None] + torch.arange(width, device=tables.device)
        tables = torch.gather(tables, 1, columns.clamp(max=tables.shape[1] - 1))
    return PagedPlan(q_lens, cu[1:], kv_lens, _window_starts(kv_lens, window), tables.to(torch.int32).contiguous())


@functools.cache
def _template(device: torch.device) -> torch.Tensor:
    """The 2048x2048 mask sparse modes 3/4 take: True (masked) strictly above the diagonal (made once)."""
    ones = torch.ones(MASK_TEMPLATE_SIZE, MASK_TEMPLATE_SIZE, dtype=torch.bool, device=device)
    return torch.triu(ones, diagonal=1)


def _band(window: int | None, device: torch.device) -> dict:
    """Causal (global) or inclusive sliding window of W keys: pre_tokens counts keys *before* the query."""
    if window is None:
        return {"sparse_mode": 3, "atten_mask": _template(device)}
    return {"sparse_mode": 4, "atten_mask": _template(device), "pre_tokens": window - 1, "next_tokens": 0}


def write_paged_cache(npu: ModuleType, k: torch.Tensor, v: torch.Tensor, key_cache: torch.Tensor,
                      value_cache: torch.Tensor, slot_mapping: torch.Tensor) -> None:
    """Scatter new tokens into ``[blocks, block_size, G*D]`` caches (viewed 4-D, ND layout)."""
    blocks, block_size, _ = key_cache.shape
    n_kv, head_dim = k.shape[1], k.shape[2]
    npu.npu_scatter_pa_kv_cache(
        k.to(key_cache.dtype).contiguous(), v.to(value_cache.dtype).contiguous(),
        key_cache.view(blocks, block_size, n_kv, head_dim), value_cache.view(blocks, block_size, n_kv, head_dim),
        slot_mapping, cache_mode="Norm")


def fia_paged_attention(npu: ModuleType, q: torch.Tensor, key_cache: torch.Tensor, value_cache: torch.Tensor,
                        plan: PagedPlan, block_size: int, n_kv: int, window: int | None, scale: float,
                        allow_tnd: bool) -> torch.Tensor:
    """Attend ``q`` ``[N, H, D]`` over caches already holding this step's keys."""
    n_tokens, n_heads, head_dim = q.shape
    common = dict(block_table=plan.block_table, block_size=block_size, actual_seq_lengths_kv=plan.kv_lens,
                  num_heads=n_heads, num_key_value_heads=n_kv, scale=scale)
    if uses_tnd(head_dim, allow_tnd):
        out, _ = npu.npu_fused_infer_attention_score(
            q.contiguous(), key_cache, value_cache, input_layout="TND", actual_seq_lengths=plan.cu_q,
            **_band(window, q.device), **common)
        return out
    if plan.max_q == 1:
        out, _ = npu.npu_fused_infer_attention_score(
            q.contiguous().view(n_tokens, 1, n_heads, head_dim), key_cache, value_cache, input_layout="BSND",
            pse_shift=_window_bias(plan, window, n_heads, block_size, q), **common)
        return out.view(n_tokens, n_heads, head_dim)
    rows, valid = plan.padded_rows
    out, _ = npu.npu_fused_infer_attention_score(
        q[rows].contiguous(), key_cache, value_cache, input_layout="BSND",
        actual_seq_lengths=plan.q_lens, **_band(window, q.device), **common)
    return out[valid]


def _window_bias(plan: PagedPlan, window: int | None, n_heads: int, block_size: int,
                 q: torch.Tensor) -> torch.Tensor | None:
    """Per-head ``pse_shift`` ``[S, H, 1, blocks*block_size]`` hiding keys before each decode window."""
    if window is None or not any(plan.window_starts):
        return None
    span = plan.block_table.shape[1] * block_size
    starts = torch.tensor(plan.window_starts, device=q.device)[:, None]
    hidden = torch.arange(span, device=q.device)[None, :] < starts
    bias = torch.where(hidden, WINDOW_BIAS, 0.0).to(q.dtype)
    return bias[:, None, None, :].expand(-1, n_heads, -1, -1).contiguous()


def fusion_dense_attention(npu: ModuleType, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                           q_positions: torch.Tensor, k_positions: torch.Tensor, k_valid: torch.Tensor,
                           window: int | None, scale: float) -> torch.Tensor:
    """Padded ``[B, T, H, D]`` attention with the reference's visibility rule as an explicit mask.

    FlashAttentionScore has a backward, so this also serves training; padding queries (rows
    that see no key) attend everywhere, as in the reference, because the kernel rejects
    fully masked rows.
    """
    visible = visibility_mask(q_positions, k_positions, k_valid, window)
    visible = visible | ~visible.any(dim=-1, keepdim=True)
    out = npu.npu_fusion_attention(q.contiguous(), k.contiguous(), v.contiguous(), q.shape[2], "BSND",
                                   atten_mask=(~visible)[:, None].contiguous(), scale=scale)[0]
    return out
