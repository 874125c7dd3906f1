"""Each NPU backend op against the CPU reference, on the torch_npu emulator and (``-m npu``) on a 910B.

Inputs are made on the CPU, the reference runs there, the backend runs on ``npu_target.device``
and results come back for comparison. Paged attention is exercised with Baichuan-M1's real
head geometries (20q/2kv x 256 global, 40q/8kv x 128 sliding) over scrambled block tables,
including stale table entries before a window, chunked prefill on top of a cache and mixed
prefill/decode batches.
"""

from __future__ import annotations

import math

import pytest
import torch
from m1_ascend.kernels import PagedAttentionMetadata, reference
from m1_ascend.kernels.npu.attention import plan_paged
from m1_ascend.kernels.npu.support import COMPOSED
from m1_ascend.kernels.plan_cache import PlanCache

pytest_plugins = ["npu_emulator.fixtures"]

BF16 = dict(atol=1e-2, rtol=1e-2)


def to(device: torch.device, *tensors: torch.Tensor) -> list[torch.Tensor]:
    return [t.to(device) for t in tensors]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_rms_norm_and_swiglu(npu_target, dtype):
    backend = npu_target.backend()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(7, 96, generator=gen).to(dtype)
    weight = (1 + 0.1 * torch.randn(96, generator=gen)).to(dtype)
    out = backend.rms_norm(*to(npu_target.device, x, weight), 1e-6).cpu()
    torch.testing.assert_close(out, reference.rms_norm(x, weight, 1e-6), **BF16)
    gate, up = torch.randn(7, 64, generator=gen).to(dtype), torch.randn(7, 64, generator=gen).to(dtype)
    out = backend.silu_and_mul(*to(npu_target.device, gate, up)).cpu()
    torch.testing.assert_close(out, reference.silu_and_mul(gate, up), **BF16)
    assert "rms_norm" not in backend.fallbacks and "silu_and_mul" not in backend.fallbacks


def test_rms_norm_with_mixed_dtypes_falls_back_and_says_so(npu_target):
    backend = npu_target.backend()
    x, weight = torch.randn(3, 16), torch.ones(16, dtype=torch.bfloat16)
    out = backend.rms_norm(*to(npu_target.device, x, weight), 1e-6).cpu()
    torch.testing.assert_close(out, reference.rms_norm(x, weight, 1e-6))
    assert "npu_rms_norm" in backend.fallbacks["rms_norm"]


@pytest.mark.parametrize("head_dim", [64, 128, 256, 48])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_rotary_matches_reference_and_leaves_inputs_alone(npu_target, head_dim, dtype):
    backend = npu_target.backend()
    gen = torch.Generator().manual_seed(1)
    n_tokens = 9
    q = torch.randn(n_tokens, 6, head_dim, generator=gen).to(dtype)
    k = torch.randn(n_tokens, 2, head_dim, generator=gen).to(dtype)
    angles = torch.arange(n_tokens, dtype=torch.float32)[:, None] * torch.rand(head_dim // 2, generator=gen)[None]
    cos, sin = torch.cat((angles, angles), -1).cos(), torch.cat((angles, angles), -1).sin()
    q_dev, k_dev, cos_dev, sin_dev = to(npu_target.device, q, k, cos, sin)
    q_before = q_dev.clone()
    q_out, k_out = backend.rotary(q_dev, k_dev, cos_dev, sin_dev)
    q_ref, k_ref = reference.rotary(q, k, cos, sin)
    torch.testing.assert_close(q_out.cpu(), q_ref, **BF16)
    torch.testing.assert_close(k_out.cpu(), k_ref, **BF16)
    assert torch.equal(q_dev, q_before)  # the fused op works in place, but on a copy
    assert "rotary" not in backend.fallbacks


def test_conv_kv_runs_exactly_across_chunks(npu_target):
    backend = npu_target.backend()
    gen = torch.Generator().manual_seed(2)
    n_kv, head_dim = 2, 64
    weights = torch.randn(n_kv, 2, generator=gen), torch.randn(n_kv, 2, generator=gen)
    state = torch.randn(4, n_kv, head_dim, generator=gen).to(torch.bfloat16)
    cu = torch.tensor([0, 5, 6, 13], dtype=torch.int32)
    slots = torch.tensor([3, 0, 2])
    k, v = (torch.randn(13, n_kv, head_dim, generator=gen).to(torch.bfloat16) for _ in range(2))
    ref_state = state.clone(), state.clone()
    ref = reference.conv_kv(k, v, *weights, *ref_state, cu, slots)
    dev_state = to(npu_target.device, state.clone(), state.clone())
    out = backend.conv_kv(*to(npu_target.device, k, v, *weights), *dev_state, *to(npu_target.device, cu, slots))
    for got, want in zip((*out, *dev_state), (*ref, *ref_state), strict=True):
        torch.testing.assert_close(got.cpu(), want, **BF16)


@pytest.mark.parametrize("window", [None, 3])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_dense_attention_with_left_padding_and_windows(npu_target, window, dtype):
    backend = npu_target.backend()
    gen = torch.Generator().manual_seed(3)
    batch, length, n_heads, n_kv, head_dim = 2, 6, 4, 2, 32
    q = torch.randn(batch, length, n_heads, head_dim, generator=gen).to(dtype)
    k, v = (torch.randn(batch, length, n_kv, head_dim, generator=gen).to(dtype) for _ in range(2))
    valid = torch.ones(batch, length, dtype=torch.bool)
    valid[1, :2] = False  # left padding: those queries see no key at all
    positions = (valid.long().cumsum(-1) - 1).clamp(min=0)
    args = (positions, positions, valid, window, 1 / math.sqrt(head_dim))
    out = backend.dense_attention(*to(npu_target.device, q, k, v, *args[:3]), *args[3:]).cpu()
    torch.testing.assert_close(out, reference.dense_attention(q, k, v, *args), **BF16)
    assert "dense_attention" not in backend.fallbacks


def paged_case(specs: list[tuple[int, int]], n_heads: int, n_kv: int, head_dim: int, window: int | None,
               block_size: int = 128, dtype: torch.dtype = torch.bfloat16, seed: int = 0):
    """Sequences given as (tokens already cached, new tokens), over a scrambled pool of random blocks.

    Table entries of blocks that lie wholly before a sequence's window are -1 (stale), so any
    read of them fails in the emulator; padding entries are 0 as in the engine.
    """
    gen = torch.Generator().manual_seed(seed)
    needed = [-(-(cached + new) // block_size) for cached, new in specs]
    num_blocks = sum(needed) + 3
    order = torch.randperm(num_blocks, generator=gen).tolist()
    width = max(needed)
    table = torch.zeros(len(specs), width, dtype=torch.int32)
    slots, used = [], 0
    for i, ((cached, new), count) in enumerate(zip(specs, needed, strict=True)):
        table[i, :count] = torch.tensor(order[used:used + count], dtype=torch.int32)
        used += count
        slots += [int(table[i, p // block_size]) * block_size + p % block_size for p in range(cached, cached + new)]
        if window is not None:
            table[i, :max(0, cached - window + 1) // block_size] = -1
    q_lens = torch.tensor([new for _, new in specs])
    meta = PagedAttentionMetadata(
        cu_seqlens_q=torch.cat([torch.zeros(1), q_lens.cumsum(0)]).to(torch.int32),
        context_lens=torch.tensor([c + n for c, n in specs], dtype=torch.int32), block_tables=table,
        slot_mapping=torch.tensor(slots), block_size=block_size, max_query_len=int(q_lens.max()),
        max_context_len=max(c + n for c, n in specs))
    n_tokens = int(q_lens.sum())
    caches = [torch.randn(num_blocks, block_size, n_kv * head_dim, generator=gen).to(dtype) for _ in range(2)]
    q = torch.randn(n_tokens, n_heads, head_dim, generator=gen).to(dtype)
    k, v = (torch.randn(n_tokens, n_kv, head_dim, generator=gen).to(dtype) for _ in range(2))
    return q, k, v, caches, meta


def meta_on(meta: PagedAttentionMetadata, device: torch.device) -> PagedAttentionMetadata:
    return PagedAttentionMetadata(meta.cu_seqlens_q.to(device), meta.context_lens.to(device),
                                  meta.block_tables.to(device), meta.slot_mapping.to(device), meta.block_size,
                                  meta.max_query_len, meta.max_context_len)


def check_paged(backend, device: torch.device, case, window: int | None) -> None:
    q, k, v, (key_cache, value_cache), meta = case
    scale = 1 / math.sqrt(q.shape[-1])
    ref_caches = key_cache.clone(), value_cache.clone()
    expected = reference.paged_attention(q, k, v, *ref_caches, meta, window, scale)
    dev_caches = to(device, key_cache, value_cache)
    out = backend.paged_attention(*to(device, q, k, v), *dev_caches, meta_on(meta, device), window, scale)
    torch.testing.assert_close(out.cpu(), expected, **BF16)
    for got, want in zip(dev_caches, ref_caches, strict=True):
        assert torch.equal(got.cpu(), want)


SCENARIOS = {
    "prefill": [(0, 37), (0, 150)],
    "chunked-prefill-and-decode": [(200, 60), (130, 1), (0, 20)],
    "decode": [(0, 1), (128, 1), (299, 1)],
}
GEOMETRIES = {  # name: (query heads, KV heads, head_dim, allow_tnd)
    "m1-sliding-tnd": (40, 8, 128, True),
    "m1-global-bsnd": (20, 2, 256, True),
    "m1-sliding-bsnd": (40, 8, 128, False),
    "small-bsnd": (4, 2, 64, True),
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
@pytest.mark.parametrize("window", [None, 100])
@pytest.mark.parametrize("geometry", list(GEOMETRIES))
def test_paged_attention_matches_reference(npu_target, geometry, window, scenario):
    n_heads, n_kv, head_dim, allow_tnd = GEOMETRIES[geometry]
    backend = npu_target.backend(allow_tnd=allow_tnd)
    case = paged_case(SCENARIOS[scenario], n_heads, n_kv, head_dim, window)
    check_paged(backend, npu_target.device, case, window)
    assert "paged_attention" not in backend.fallbacks


def test_paged_attention_outside_documented_limits_falls_back(npu_target):
    backend = npu_target.backend()
    prefill = paged_case([(20, 30)], 4, 2, 64, window=None, block_size=16)
    check_paged(backend, npu_target.device, prefill, None)
    assert "multiple of 128" in backend.fallbacks["paged_attention"]
    decode_backend = npu_target.backend()
    check_paged(decode_backend, npu_target.device, paged_case([(40, 1)], 4, 2, 64, window=8, block_size=16), 8)
    assert "paged_attention" not in decode_backend.fallbacks  # Q_S = 1 accepts 16-token blocks
    fp32 = npu_target.backend()
    check_paged(fp32, npu_target.device, paged_case([(5, 3)], 4, 2, 64, None, dtype=torch.float32), None)
    assert "fp16/bf16" in fp32.fallbacks["paged_attention"]


def test_plan_cache_reuses_host_lengths_until_the_metadata_changes():
    *_, meta = paged_case([(10, 5), (0, 7)], 4, 2, 64, window=None)
    plans = PlanCache(plan_paged)
    first = plans.get(meta, 100)
    assert plans.get(meta, 100) is first
    assert plans.get(meta, None) is not first
    meta.context_lens.add_(1)  # refilled in place: must not reuse stale lengths
    assert plans.get(meta, 100).kv_lens == [16, 8]


@pytest.mark.npu_emulated
def test_conv_kv_route_is_reported(torch_npu_emulator):
    from m1_ascend.kernels.npu import NpuBackend

    backend = NpuBackend(device="cpu")
    assert backend.conv_kv_impl == "torch"
    assert backend.conv_kv_route.kernel == COMPOSED and "m1_ascend_ops" in backend.fallbacks["conv_kv"]
    with pytest.raises(RuntimeError, match="custom"):
        NpuBackend(device="cpu", conv_kv_impl="custom")
