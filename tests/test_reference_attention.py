"""The reference paged attention: exact against a brute-force attention, and its cost follows each sequence."""

from __future__ import annotations

import random

import pytest
import torch
from m1_ascend.kernels import PagedAttentionMetadata
from m1_ascend.kernels.reference import attention
from m1_ascend.kernels.reference.attention import masked_attention, paged_attention, plan_tiles, write_paged_cache

N_HEADS, N_KV, HEAD_DIM = 6, 2, 8


def make_step(rng: random.Random, shapes: list[tuple[int, int]], block_size: int, num_blocks: int = 64):
    """Caches holding each sequence's past keys, and a step adding ``q_len`` tokens per sequence.

    Returns (q, k, v, key_cache, value_cache, meta, full_keys, full_values): ``full_*`` are each
    sequence's keys in position order, what a brute-force attention reads.
    """
    gen = torch.Generator().manual_seed(rng.randrange(2**31))
    width = N_KV * HEAD_DIM
    key_cache = torch.randn(num_blocks, block_size, width, generator=gen)
    value_cache = torch.randn(num_blocks, block_size, width, generator=gen)
    free = list(range(num_blocks))
    rng.shuffle(free)
    tables, slots, full_keys, full_values = [], [], [], []
    new_k, new_v = [], []
    for past, q_len in shapes:
        total = past + q_len
        blocks = [free.pop() for _ in range(-(-total // block_size))]
        tables.append(blocks)
        keys = torch.randn(total, N_KV, HEAD_DIM, generator=gen)
        values = torch.randn(total, N_KV, HEAD_DIM, generator=gen)
        for pos in range(past):
            slot = blocks[pos // block_size] * block_size + pos % block_size
            key_cache.view(-1, width)[slot] = keys[pos].reshape(-1)
            value_cache.view(-1, width)[slot] = values[pos].reshape(-1)
        slots += [blocks[pos // block_size] * block_size + pos % block_size for pos in range(past, total)]
        new_k.append(keys[past:])
        new_v.append(values[past:])
        full_keys.append(keys)
        full_values.append(values)
    cols = max(len(t) for t in tables)
    cu = torch.tensor([0, *torch.tensor([q for _, q in shapes]).cumsum(0).tolist()], dtype=torch.int32)
    meta = PagedAttentionMetadata(
        cu_seqlens_q=cu, context_lens=torch.tensor([p + q for p, q in shapes], dtype=torch.int32),
        block_tables=torch.tensor([t + [0] * (cols - len(t)) for t in tables], dtype=torch.int32),
        slot_mapping=torch.tensor(slots), block_size=block_size,
        max_query_len=max(q for _, q in shapes), max_context_len=max(p + q for p, q in shapes))
    q = torch.randn(int(cu[-1]), N_HEADS, HEAD_DIM, generator=gen)
    return q, torch.cat(new_k), torch.cat(new_v), key_cache, value_cache, meta, full_keys, full_values


def brute_force(q: torch.Tensor, shapes: list[tuple[int, int]], full_keys, full_values, window: int | None) -> torch.Tensor:
    outs, start = [], 0
    for (past, q_len), keys, values in zip(shapes, full_keys, full_values, strict=True):
        total = past + q_len
        q_pos = torch.arange(past, total)[None]
        k_pos = torch.arange(total)[None]
        mask = attention.visibility_mask(q_pos, k_pos, torch.ones(1, total, dtype=torch.bool), window)
        outs.append(masked_attention(q[None, start:start + q_len], keys[None], values[None], mask, HEAD_DIM ** -0.5)[0])
        start += q_len
    return torch.cat(outs)


@pytest.fixture(params=["default-tiles", "tiny-tiles"])
def tiles(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run each case with the real tile sizes and with tiny ones that split every sequence."""
    if request.param == "tiny-tiles":
        monkeypatch.setattr(attention, "QUERY_TILE", 3)
        monkeypatch.setattr(attention, "KEY_TILE", 4)
        monkeypatch.setattr(attention, "MAX_PAIRS", 24)
    return request.param


@pytest.mark.parametrize("seed", range(6))
def test_paged_attention_equals_brute_force(tiles: str, seed: int) -> None:
    rng = random.Random(seed)
    for window in (None, 1, 5, 13):
        block_size = rng.choice([1, 4, 16])
        shapes = [(rng.randrange(0, 40), rng.choice([1, 1, 2, rng.randrange(1, 30)])) for _ in range(rng.randrange(1, 7))]
        q, k, v, key_cache, value_cache, meta, full_k, full_v = make_step(rng, shapes, block_size, num_blocks=512)
        out = paged_attention(q, k, v, key_cache, value_cache, meta, window, HEAD_DIM ** -0.5)
        torch.testing.assert_close(out, brute_force(q, shapes, full_k, full_v, window), atol=1e-5, rtol=1e-5)


def test_negative_slots_are_padding_and_write_nothing() -> None:
    key_cache = torch.zeros(2, 4, 3)
    value_cache = torch.zeros(2, 4, 3)
    k = torch.ones(3, 1, 3)
    write_paged_cache(k, 2 * k, key_cache, value_cache, torch.tensor([5, -1, 2]))
    flat = key_cache.view(-1, 3)
    assert flat[5].eq(1).all() and flat[2].eq(1).all()
    assert flat.sum() == 6 and value_cache.view(-1, 3)[7].eq(0).all()  # -1 did not wrap to the last row


def test_a_long_sequence_is_planned_apart_from_short_ones_and_windows_read_only_the_window() -> None:
    rng = random.Random(0)
    shapes = [(rng.randrange(5, 30), 1) for _ in range(16)] + [(3000, 1)]
    *_, meta, _, _ = make_step(rng, shapes, block_size=16, num_blocks=400)
    batches = plan_tiles(meta, None)
    (long,) = [b for b in batches if b.num_keys > 32]
    assert long.q_index.shape[0] == 1  # the 3001-key decode alone: the short ones do not pad to its length
    short = [b for b in batches if b is not long]
    assert sum(b.q_index.shape[0] for b in short) == 16
    for batch in short:  # batched by power-of-two span: padding at most doubles a tile's keys
        assert batch.num_keys <= 2 * int(batch.k_valid.sum(dim=1).min())
    windowed = plan_tiles(meta, 64)
    assert max(b.num_keys for b in windowed) == 64  # a decode token reads its window, not its 3001 keys


def test_scratch_of_a_long_prefill_chunk_stays_bounded() -> None:
    rng = random.Random(1)
    *_, meta, _, _ = make_step(rng, [(500, 1500)], block_size=16, num_blocks=200)
    for window in (None, 256):
        for batch in plan_tiles(meta, window):
            n, rows = batch.q_index.shape
            assert rows <= attention.QUERY_TILE
            assert n * rows * min(attention.KEY_TILE, batch.num_keys) <= max(attention.MAX_PAIRS, rows * attention.KEY_TILE)
            if window is not None:
                assert batch.num_keys <= attention.QUERY_TILE + window - 1
