"""torch_npu operator semantics, derived by hand from the documents, not from our backend.

If the emulator and the backend shared a misreading of the docs, the backend tests would pass
for the wrong reason. The semantic tests here pin down which keys a sparse mode lets a query
see (``pre_tokens`` excludes the query itself), that ``scale`` defaults to 1.0, that True masks,
that TND lengths are cumulative, how block tables are read. They run against the emulator
(``npu_emulated``) and, with ``pytest -m npu`` on a 910B, against the real torch_npu: that run
is what confirms the emulator, and with it every CPU result, on hardware. The strictness tests
(documented limits the emulator enforces) run on the emulator only.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from npu_emulator import template_mask
from npu_emulator._checks import Unsupported

pytest_plugins = ["npu_emulator.fixtures"]


def visible_keys(target, layout: str, q_len: int, kv_len: int, mask: torch.Tensor | None = None,
                 **kwargs) -> list[list[int]]:
    """Which keys each query row attends to: zero queries give uniform weights over the visible
    keys, and one-hot values (key j carries e_j) make them readable from the output."""
    head_dim = 128 if layout == "TND" else 16
    dtype = torch.bfloat16 if layout == "TND" else torch.float16
    v = torch.eye(kv_len, head_dim, dtype=dtype)[:, None, :].to(target.device)
    q = torch.zeros(q_len, 1, head_dim, dtype=dtype, device=target.device)
    if mask is not None:
        kwargs["atten_mask"] = mask.to(target.device)
    fia = target.torch_npu.npu_fused_infer_attention_score
    if layout == "TND":
        out, _ = fia(q, torch.zeros_like(v), v, input_layout="TND", actual_seq_lengths=[q_len],
                     actual_seq_lengths_kv=[kv_len], **kwargs)
        rows = out[:, 0]
    else:
        out, _ = fia(q[None].contiguous(), torch.zeros_like(v)[None], v[None].contiguous(), input_layout="BSND",
                     **kwargs)
        rows = out[0, :, 0]
    return [torch.nonzero(row[:kv_len].float().cpu() > 0).flatten().tolist() for row in rows]


def test_band_pre_tokens_excludes_the_query_itself(npu_target):
    window = 3
    band = dict(sparse_mode=4, mask=template_mask(), next_tokens=0)
    seen = visible_keys(npu_target, "BSND", 6, 6, pre_tokens=window - 1, **band)
    assert seen == [[0], [0, 1], [0, 1, 2], [1, 2, 3], [2, 3, 4], [3, 4, 5]]
    wider = visible_keys(npu_target, "BSND", 6, 6, pre_tokens=window, **band)
    assert wider[5] == [2, 3, 4, 5]  # passing W (as some peers do) shows W + 1 keys
    assert visible_keys(npu_target, "TND", 6, 6, pre_tokens=window - 1, **band) == seen


def test_causal_modes_anchor_top_left_or_bottom_right(npu_target):
    assert visible_keys(npu_target, "BSND", 2, 5, sparse_mode=2, mask=template_mask()) == [[0], [0, 1]]
    assert visible_keys(npu_target, "BSND", 2, 5, sparse_mode=3, mask=template_mask()) == [[0, 1, 2, 3],
                                                                                           [0, 1, 2, 3, 4]]
    band = visible_keys(npu_target, "BSND", 2, 5, sparse_mode=4, mask=template_mask(), pre_tokens=1, next_tokens=0)
    assert band == [[2, 3], [3, 4]]


def test_single_query_ignores_the_band_outside_tnd_but_not_in_tnd(npu_target):
    assert visible_keys(npu_target, "BSND", 1, 4, sparse_mode=4, pre_tokens=0, next_tokens=0) == [[0, 1, 2, 3]]
    tnd = visible_keys(npu_target, "TND", 1, 4, sparse_mode=4, mask=template_mask(), pre_tokens=0, next_tokens=0)
    assert tnd == [[3]]


def test_mask_true_means_masked_and_scale_defaults_to_one(npu_target):
    mask = torch.zeros(1, 1, 3, 4, dtype=torch.bool)
    mask[0, 0, 0, 3] = True
    assert visible_keys(npu_target, "BSND", 3, 4, sparse_mode=1, mask=mask)[0] == [0, 1, 2]

    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 5, 16, generator=gen, dtype=torch.float16) for _ in range(3))
    fia = npu_target.torch_npu.npu_fused_infer_attention_score
    dev = [t.to(npu_target.device) for t in (q, k, v)]
    out, _ = fia(*dev, num_heads=2, input_layout="BNSD")
    expected = torch.softmax(q.float() @ k.float().transpose(-1, -2), dim=-1) @ v.float()  # no 1/sqrt(d)
    torch.testing.assert_close(out.float().cpu(), expected, atol=2e-3, rtol=2e-3)
    scaled, _ = fia(*dev, num_heads=2, input_layout="BNSD", scale=1 / math.sqrt(16))
    assert not torch.allclose(scaled.cpu(), out.cpu(), atol=1e-2)


def test_tnd_lengths_are_cumulative(npu_target):
    fia = npu_target.torch_npu.npu_fused_infer_attention_score
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(5, 2, 128, generator=gen).to(torch.bfloat16).to(npu_target.device) for _ in range(3))
    out, _ = fia(q, k, v, num_heads=2, input_layout="TND", actual_seq_lengths=[2, 5], actual_seq_lengths_kv=[2, 5])
    second, _ = fia(q[2:], k[2:], v[2:], num_heads=2, input_layout="TND", actual_seq_lengths=[3],
                    actual_seq_lengths_kv=[3])
    torch.testing.assert_close(out[2:].cpu(), second.cpu())


def paged_copy(keys: torch.Tensor, block_size: int, order: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Store ``keys`` ``[S, G*D]`` in cache blocks listed in ``order``; return cache and int32 table."""
    cache = torch.zeros(max(order) + 1, block_size, keys.shape[-1], dtype=keys.dtype)
    for i, block in enumerate(order):
        chunk = keys[i * block_size:(i + 1) * block_size]
        cache[block, :chunk.shape[0]] = chunk
    return cache, torch.tensor([order], dtype=torch.int32)


def test_paged_attention_reads_blocks_through_the_table(npu_target):
    fia = npu_target.torch_npu.npu_fused_infer_attention_score
    gen = torch.Generator().manual_seed(0)
    n_kv, head_dim, kv_len = 2, 256, 300
    q = torch.randn(1, 3, 4, head_dim, generator=gen).to(torch.bfloat16)
    k, v = (torch.randn(1, kv_len, n_kv, head_dim, generator=gen).to(torch.bfloat16) for _ in range(2))
    causal = dict(num_heads=4, num_key_value_heads=n_kv, input_layout="BSND", sparse_mode=3,
                  atten_mask=template_mask().to(npu_target.device), actual_seq_lengths_kv=[kv_len])
    dense, _ = fia(*(t.to(npu_target.device) for t in (q, k, v)), **causal)
    key_cache, table = paged_copy(k[0].reshape(kv_len, -1), 128, [5, 0, 3])
    value_cache, _ = paged_copy(v[0].reshape(kv_len, -1), 128, [5, 0, 3])
    paged, _ = fia(*(t.to(npu_target.device) for t in (q, key_cache, value_cache)),
                   block_table=table.to(npu_target.device), block_size=128, **causal)
    torch.testing.assert_close(paged.cpu(), dense.cpu())


def test_scatter_pa_kv_cache_norm_mode_writes_slots(npu_target):
    key = torch.arange(2 * 3 * 16, dtype=torch.float16).view(2, 3, 16).to(npu_target.device)
    cache = torch.zeros(2, 16, 3, 16, dtype=torch.float16, device=npu_target.device)
    values = torch.zeros_like(cache)
    slots = torch.tensor([1, 17], device=npu_target.device)
    npu_target.torch_npu.npu_scatter_pa_kv_cache(key, key, cache, values, slots, cache_mode="Norm")
    assert torch.equal(cache[0, 1].cpu(), key[0].cpu()) and torch.equal(cache[1, 1].cpu(), key[1].cpu())
    assert int((cache != 0).sum()) == int((key != 0).sum())


def test_rotary_ops_rotate_half_and_fused_rope_works_in_place(npu_target):
    npu = npu_target.torch_npu
    x = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 1, 1, 4).to(npu_target.device)
    rotated = npu.npu_rotary_mul(x, torch.zeros_like(x), torch.ones_like(x))
    assert rotated.flatten().tolist() == [-3.0, -4.0, 1.0, 2.0]
    gen = torch.Generator().manual_seed(1)
    q, k = torch.randn(1, 3, 2, 128, generator=gen), torch.randn(1, 3, 1, 128, generator=gen)
    cos, sin = torch.randn(1, 3, 1, 128, generator=gen), torch.randn(1, 3, 1, 128, generator=gen)
    expected = q * cos + torch.cat((-q[..., 64:], q[..., :64]), dim=-1) * sin
    q_dev, k_dev = q.to(npu_target.device), k.to(npu_target.device)
    npu.npu_apply_rotary_pos_emb(q_dev, k_dev, cos.to(npu_target.device), sin.to(npu_target.device))
    torch.testing.assert_close(q_dev.cpu(), expected, atol=1e-5, rtol=1e-5)  # updated in place


def test_rms_norm_and_swiglu_outputs(npu_target):
    npu, dev = npu_target.torch_npu, npu_target.device
    y, rstd = npu.npu_rms_norm(torch.tensor([[3.0, 4.0]], device=dev), torch.tensor([1.0, 2.0], device=dev),
                               epsilon=0.0)
    assert rstd.dtype == torch.float32
    torch.testing.assert_close(y.cpu(), torch.tensor([[3.0, 8.0]]) / math.sqrt(12.5))
    out = npu.npu_swiglu(torch.tensor([[2.0, 5.0]], device=dev))
    torch.testing.assert_close(out.cpu(), F.silu(torch.tensor([[2.0]])) * 5.0)  # the first half is activated


def test_fusion_attention_mask_polarity_and_gradient(npu_target):
    v = torch.eye(3, 16)[None, :, None, :].to(npu_target.device)
    q = torch.zeros(1, 3, 1, 16, device=npu_target.device, requires_grad=True)
    mask = torch.triu(torch.ones(3, 3, dtype=torch.bool), diagonal=1)[None, None].to(npu_target.device)
    out = npu_target.torch_npu.npu_fusion_attention(q, torch.zeros_like(v), v, 1, "BSND", atten_mask=mask)[0]
    assert torch.nonzero(out[0, 1, 0].detach().cpu() > 0).flatten().tolist() == [0, 1]
    out.sum().backward()  # the training path (dense_attention) relies on its backward
    assert q.grad is not None and q.grad.shape == q.shape


# -- documented limits the emulator enforces ---------------------------------------------------------
@pytest.mark.npu_emulated
def test_emulator_rejects_what_the_documents_rule_out(torch_npu_emulator):
    fia = torch_npu_emulator.npu_fused_infer_attention_score
    x = torch.zeros(1, 4, 1, 16, dtype=torch.float16)
    # Bound like the real 2.13.0 package: a 1-D int tensor is a valid SymInt[]; bad keywords/types are RuntimeError.
    fia(x, x, x, input_layout="BSND", actual_seq_lengths=torch.tensor([4]))
    with pytest.raises(RuntimeError, match="failed to match any schema"):
        fia(x, x, x, input_layout="BSND", actual_seq_length=[4])
    with pytest.raises(RuntimeError, match="failed to match any schema"):
        fia(x, x, x, input_layout="BSND", num_heads="1")
    with pytest.raises(Unsupported, match="masked"):
        fia(x, x, x, input_layout="BSND", sparse_mode=3, atten_mask=~template_mask())
    with pytest.raises(Unsupported, match="template"):
        fia(x, x, x, input_layout="BSND", sparse_mode=3)
    with pytest.raises(Unsupported, match="not supported"):
        fia(x, x, x, input_layout="BSND", sparse_mode=6, atten_mask=template_mask())
    with pytest.raises(Unsupported, match="Q_S = 1 the mask"):  # a decode mask is (B, KV_S), not the template
        fia(x[:, :1], x, x, input_layout="BSND", atten_mask=template_mask())
    wide = torch.zeros(5, 1, 256, dtype=torch.bfloat16)
    with pytest.raises(Unsupported, match="head_dim 128 or 192"):
        fia(wide, wide, wide, input_layout="TND", actual_seq_lengths=[5], actual_seq_lengths_kv=[5])
    tnd = torch.zeros(5, 1, 128, dtype=torch.bfloat16)
    with pytest.raises(Unsupported, match="cumulative"):
        fia(tnd, tnd, tnd, input_layout="TND", actual_seq_lengths=[3, 2], actual_seq_lengths_kv=[3, 2])


@pytest.mark.npu_emulated
def test_emulator_enforces_paged_block_rules(torch_npu_emulator):
    fia = torch_npu_emulator.npu_fused_infer_attention_score
    keys = torch.randn(300, 32).to(torch.bfloat16)
    q = torch.zeros(1, 3, 2, 16, dtype=torch.bfloat16)
    cache, table = paged_copy(keys, 64, [4, 0, 3, 1, 2])
    paged = dict(num_heads=2, num_key_value_heads=2, input_layout="BSND", block_size=64, actual_seq_lengths_kv=[300])
    with pytest.raises(Unsupported, match="multiple of 128"):
        fia(q, cache, cache, block_table=table, **paged)
    decode, _ = fia(q[:, :1], cache, cache, block_table=table, **paged)  # Q_S = 1 takes 16-aligned blocks
    assert decode.shape == (1, 1, 2, 16)
    stale = table.clone()
    stale[0, 1] = 99
    with pytest.raises(Unsupported, match="outside the cache"):
        fia(q[:, :1], cache, cache, block_table=stale, **paged)


@pytest.mark.npu_emulated
def test_emulator_cache_write_and_rope_limits(torch_npu_emulator):
    key = torch.zeros(2, 3, 4, dtype=torch.float16)
    cache = torch.zeros(2, 16, 3, 4, dtype=torch.float16)
    with pytest.raises(NotImplementedError, match="Norm"):  # the default cache_mode is the NZ layout
        torch_npu_emulator.npu_scatter_pa_kv_cache(key, key, cache, cache.clone(), torch.tensor([1, 17]))
    with pytest.raises(Unsupported, match="unique"):
        torch_npu_emulator.npu_scatter_pa_kv_cache(key, key, cache, cache.clone(), torch.tensor([3, 3]),
                                                   cache_mode="Norm")
    values = torch.ones(2, 3, 4, dtype=torch.float16)
    torch_npu_emulator.npu_scatter_pa_kv_cache(values, values, cache, cache.clone(), torch.tensor([-1, 5]),
                                               cache_mode="Norm")
    assert cache.view(32, 3, 4)[5].eq(1).all() and cache.sum() == 12  # slot -1 is skipped, not the last row
    wide = torch.randn(1, 3, 1, 256)
    with pytest.raises(Unsupported, match="64 or 128"):
        torch_npu_emulator.npu_apply_rotary_pos_emb(wide, wide.clone(), wide, wide)
    empty_row = torch.ones(1, 1, 2, 2, dtype=torch.bool)
    q = torch.zeros(1, 2, 1, 16)
    with pytest.raises(Unsupported, match="fully masked"):
        torch_npu_emulator.npu_fusion_attention(q, q, q, 1, "BSND", atten_mask=empty_row)
