"""Global and sliding-window attention, dense (padded batch) and over the paged cache.

One visibility rule, written once: key ``s`` is visible to query ``t`` iff
``pos_t - W < pos_s <= pos_t`` (inclusive window of ``W``; no window: every earlier key).

The paged path is the ground truth the NPU kernels are held to, and also what the CPU engine
serves with, so its cost must follow what each sequence actually attends to, never the batch's
longest sequence:

- queries are cut into tiles of at most ``QUERY_TILE`` rows of one sequence, and a tile reads
  only the keys some row of it can see (for a sliding window: the window, not the whole context);
- tiles with similar key spans (same power of two) are batched together, so a long sequence among
  short ones costs about what it costs alone;
- keys are consumed ``KEY_TILE`` at a time with an online softmax (flash-attention's recurrence,
  in plain fp32 torch), and a batch of tiles holds at most ``MAX_PAIRS`` query-key pairs per key
  tile, so the scratch memory of one call is bounded whatever the context length: about
  ``MAX_PAIRS x heads x 8`` bytes of fp32 scores and probabilities (80 MiB for the 14B's 40-head
  layers), plus the gathered keys and values of one key tile. The step's plan (index and mask
  tensors, shared by every layer) holds at most two bools per query-key pair of the step.

Inside a compiled decode graph (``torch.compile``) the paged path runs as one opaque operator,
``m1_ascend::reference_paged_attention``: its cost depends on lengths known only at run time, which
a static graph cannot express, so it stays eager while everything around it is compiled.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import torch
import torch.nn.functional as F

from ..interface import PagedAttentionMetadata
from ..library import register_fake
from ..plan_cache import PlanCache

QUERY_TILE = 128
KEY_TILE = 512
MAX_PAIRS = 2**18  # query-key pairs of one tile batch within one key tile


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
    """Scatter new tokens into ``[num_blocks, block_size, G*D]`` caches at flat slot indices.

    Slots below 0 are padding rows and are skipped, as the Ascend scatter kernel does.
    """
    flat_k = key_cache.view(-1, key_cache.shape[-1])
    flat_v = value_cache.view(-1, value_cache.shape[-1])
    k, v = k.reshape(k.shape[0], -1), v.reshape(v.shape[0], -1)
    slots = slot_mapping.long()
    if bool((slots < 0).any()):
        keep = slots >= 0
        slots, k, v = slots[keep], k[keep], v[keep]
    flat_k[slots] = k.to(key_cache.dtype)
    flat_v[slots] = v.to(value_cache.dtype)


@dataclass
class TileBatch:
    """Query tiles read together: rows of one sequence each, keys up to ``num_keys`` per tile."""

    q_index: torch.Tensor  # int64 [n, rows]: flat query row (padding repeats a real row)
    q_valid: torch.Tensor  # bool [n, rows]
    k_slots: torch.Tensor  # int64 [n, num_keys]: cache slot of each key (padding: a real slot)
    k_valid: torch.Tensor  # bool [n, num_keys]
    sdpa_mask: torch.Tensor | None  # bool [n, 1, rows, num_keys]: keys each query sees (None: all of them)
    hidden: torch.Tensor  # bool [n, 1, 1, rows, num_keys]: the keys it does not see, in the online softmax's layout
    out_rows: torch.Tensor  # int64: the flat query row of each real entry of the result, in result order
    real: torch.Tensor  # int64: where those real entries sit in the flattened ``[n * rows]`` result

    @property
    def num_keys(self) -> int:
        return self.k_slots.shape[1]


@dataclass
class StepPlan:
    """Everything a layer's attention derives from the step's metadata, made once for every layer."""

    batches: list[TileBatch]
    write_rows: torch.Tensor | None  # rows whose slot is >= 0 (None: all of them)
    write_slots: torch.Tensor  # int64 slots of those rows
    in_order: bool  # one batch whose result rows are exactly the query rows 0..N-1


@dataclass(frozen=True)
class _Tile:
    seq: int
    first_row: int  # flat query row of the tile's first query
    rows: int
    first_pos: int  # position of the first query
    key_start: int  # first key position any row of the tile sees

    @property
    def key_end(self) -> int:
        return self.first_pos + self.rows

    @property
    def span(self) -> int:
        return self.key_end - self.key_start


def _tiles(cu: list[int], ctx: list[int], window: int | None) -> list[_Tile]:
    tiles = []
    for seq, ((start, end), context) in enumerate(zip(pairwise(cu), ctx, strict=True)):
        for first in range(start, end, QUERY_TILE):
            rows = min(QUERY_TILE, end - first)
            first_pos = context - (end - first)
            key_start = max(0, first_pos - window + 1) if window is not None else 0
            tiles.append(_Tile(seq, first, rows, first_pos, key_start))
    return tiles


def _batch(tiles: list[_Tile], block_tables: torch.Tensor, block_size: int, window: int | None) -> TileBatch:
    device = block_tables.device
    rows = max(t.rows for t in tiles)
    num_keys = max(t.span for t in tiles)
    first_row = torch.tensor([t.first_row for t in tiles], device=device)[:, None]
    n_rows = torch.tensor([t.rows for t in tiles], device=device)[:, None]
    first_pos = torch.tensor([t.first_pos for t in tiles], device=device)[:, None]
    key_start = torch.tensor([t.key_start for t in tiles], device=device)[:, None]
    key_end = torch.tensor([t.key_end for t in tiles], device=device)[:, None]
    offsets = torch.arange(rows, device=device)[None, :]
    q_valid = offsets < n_rows
    q_index = first_row + torch.where(q_valid, offsets, 0)
    k_pos = key_start + torch.arange(num_keys, device=device)[None, :]
    k_valid = k_pos < key_end
    safe_pos = torch.where(k_valid, k_pos, key_start)
    seqs = torch.tensor([t.seq for t in tiles], device=device)[:, None]
    blocks = block_tables.long()[seqs, safe_pos // block_size]
    q_pos = first_pos + offsets
    visible = visibility_mask(q_pos, k_pos, k_valid, window)
    visible |= ~visible.any(dim=-1, keepdim=True)  # rows that see nothing (empty padding rows): finite garbage
    real = q_valid.flatten().nonzero().squeeze(1)
    return TileBatch(q_index, q_valid, blocks * block_size + safe_pos % block_size, k_valid,
                     None if bool(visible.all()) else visible[:, None], ~visible[:, None, None],
                     q_index.flatten()[real], real)


def plan_step(meta: PagedAttentionMetadata, window: int | None) -> StepPlan:
    batches = plan_tiles(meta, window)
    slots = meta.slot_mapping.long()
    padding = bool((slots < 0).any())
    write_rows = (slots >= 0).nonzero().squeeze(1) if padding else None
    n_tokens = slots.shape[0]
    in_order = (len(batches) == 1 and batches[0].real.numel() == batches[0].q_valid.numel()
                and batches[0].out_rows.equal(torch.arange(n_tokens, device=slots.device)))
    return StepPlan(batches, write_rows, slots if write_rows is None else slots[write_rows], in_order)


def plan_tiles(meta: PagedAttentionMetadata, window: int | None) -> list[TileBatch]:
    """Group the step's query tiles by key span and cap each batch's scratch memory."""
    tiles = _tiles([int(x) for x in meta.cu_seqlens_q.tolist()], [int(x) for x in meta.context_lens.tolist()], window)
    by_span: dict[tuple[bool, int], list[_Tile]] = {}
    for tile in tiles:  # decode tiles (1 row) apart from prefill tiles, then by power-of-two span
        by_span.setdefault((tile.rows == 1, (tile.span - 1).bit_length()), []).append(tile)
    batches = []
    for group in by_span.values():
        pairs = max(t.rows for t in group) * min(KEY_TILE, max(t.span for t in group))
        step = max(1, MAX_PAIRS // pairs)
        batches += [_batch(group[i:i + step], meta.block_tables, meta.block_size, window)
                    for i in range(0, len(group), step)]
    return batches


_plans: PlanCache[StepPlan] = PlanCache(plan_step)


def _scores(q: torch.Tensor, keys: torch.Tensor, scale: float) -> torch.Tensor:
    """``q`` ``[n, G, g, rows, D]``, ``keys`` ``[n, K, G, D]`` -> fp32 scores ``[n, G, g, rows, K]``."""
    n, n_kv, group, rows, head_dim = q.shape
    k = keys.float().permute(0, 2, 3, 1)  # [n, G, D, K]
    return torch.matmul(q.reshape(n, n_kv, group * rows, head_dim), k).view(n, n_kv, group, rows, -1) * scale


def _weighted(probs: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """``probs`` ``[n, G, g, rows, K]``, ``values`` ``[n, K, G, D]`` -> ``[n, G, g, rows, D]``."""
    n, n_kv, group, rows, num_keys = probs.shape
    out = torch.matmul(probs.reshape(n, n_kv, group * rows, num_keys), values.float().transpose(1, 2))
    return out.view(n, n_kv, group, rows, -1)


def _attend(queries: torch.Tensor, key_cache: torch.Tensor, value_cache: torch.Tensor, batch: TileBatch,
            n_kv: int, scale: float) -> torch.Tensor:
    """Attention of one tile batch (``queries`` ``[n, rows, H, D]``, online softmax over key tiles); fp32 result."""
    n, rows, n_heads, head_dim = queries.shape
    group = n_heads // n_kv
    flat_k = key_cache.view(-1, n_kv, head_dim)
    flat_v = value_cache.view(-1, n_kv, head_dim)
    if batch.num_keys <= KEY_TILE:  # one key tile (every decode step of a short context): one fused op
        slots = batch.k_slots.flatten()
        keys, values = (cache.index_select(0, slots).view(n, -1, n_kv, head_dim).float().transpose(1, 2)
                        for cache in (flat_k, flat_v))
        out = F.scaled_dot_product_attention(queries.float().transpose(1, 2), keys, values, attn_mask=batch.sdpa_mask,
                                             scale=scale, enable_gqa=True)
        return out.transpose(1, 2)
    qg = queries.float().view(n, rows, n_kv, group, head_dim).permute(0, 2, 3, 1, 4)
    peak = torch.full((n, n_kv, group, rows), float("-inf"), device=queries.device)
    total = torch.zeros(n, n_kv, group, rows, device=queries.device)
    acc = torch.zeros(n, n_kv, group, rows, head_dim, device=queries.device)
    for start in range(0, batch.num_keys, KEY_TILE):
        keys = slice(start, start + KEY_TILE)
        scores = _scores(qg, flat_k[batch.k_slots[:, keys]], scale)
        scores.masked_fill_(batch.hidden[..., keys], float("-inf"))
        new_peak = torch.maximum(peak, scores.amax(dim=-1))
        safe_peak = torch.where(torch.isinf(new_peak), 0.0, new_peak)  # rows with nothing visible yet
        probs = torch.exp(scores - safe_peak[..., None])
        decay = torch.exp(torch.where(torch.isinf(peak), float("-inf"), peak - safe_peak))
        total = total * decay + probs.sum(dim=-1)
        acc = acc * decay[..., None] + _weighted(probs, flat_v[batch.k_slots[:, keys]])
        peak = new_peak
    out = acc / total.clamp(min=torch.finfo(torch.float32).tiny)[..., None]
    return out.permute(0, 3, 1, 2, 4).reshape(n, rows, n_heads, head_dim)


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
    if torch.compiler.is_compiling():  # one opaque op in the graph; it comes back here when the graph runs
        if meta.epoch_source is None:
            raise RuntimeError("a compiled step needs metadata with an epoch_source (a Python epoch would be frozen)")
        return torch.ops.m1_ascend.reference_paged_attention(
            q, k, v, key_cache, value_cache, meta.cu_seqlens_q, meta.context_lens, meta.block_tables,
            meta.slot_mapping, meta.epoch_source, meta.block_size, window or 0, scale)
    plan = _plans.get(meta, window)  # planned once per step and window, shared by every layer
    rows = (k, v) if plan.write_rows is None else (k[plan.write_rows], v[plan.write_rows])
    for cache, new in zip((key_cache, value_cache), rows, strict=True):
        cache.view(-1, cache.shape[-1]).index_copy_(0, plan.write_slots, new.flatten(1).to(cache.dtype))
    if plan.in_order:  # the batch's queries are q itself, in order
        batch = plan.batches[0]
        queries = q.view(*batch.q_index.shape, *q.shape[1:])
        return _attend(queries, key_cache, value_cache, batch, k.shape[1], scale).reshape(q.shape).to(q.dtype)
    out = q.new_empty(q.shape)
    for batch in plan.batches:
        result = _attend(q[batch.q_index], key_cache, value_cache, batch, k.shape[1], scale).flatten(0, 1)
        out.index_copy_(0, batch.out_rows, result[batch.real].to(q.dtype))
    return out


def _paged_attention_kernel(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_cache: torch.Tensor,
                            value_cache: torch.Tensor, cu_seqlens_q: torch.Tensor, context_lens: torch.Tensor,
                            block_tables: torch.Tensor, slot_mapping: torch.Tensor, epoch: torch.Tensor,
                            block_size: int, window: int, scale: float) -> torch.Tensor:
    meta = PagedAttentionMetadata(cu_seqlens_q, context_lens, block_tables, slot_mapping, block_size, 0, 0,
                                  epoch_source=epoch)
    return paged_attention(q, k, v, key_cache, value_cache, meta, window or None, scale)


def _paged_attention_fake(q: torch.Tensor, *args: object) -> torch.Tensor:
    return torch.empty_like(q)


# A plain dispatcher op (not torch.library.custom_op, whose Python wrapper costs ~0.2 ms a call).
_library = torch.library.Library("m1_ascend", "FRAGMENT")
_library.define("reference_paged_attention(Tensor q, Tensor k, Tensor v, Tensor(a!) key_cache, Tensor(b!) value_cache, "
                "Tensor cu_seqlens_q, Tensor context_lens, Tensor block_tables, Tensor slot_mapping, Tensor epoch, "
                "int block_size, int window, float scale) -> Tensor")
_library.impl("reference_paged_attention", _paged_attention_kernel, "CPU")
register_fake("m1_ascend::reference_paged_attention", _library)(_paged_attention_fake)
