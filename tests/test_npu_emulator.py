"""The torch_npu emulator against the documented semantics, derived by hand (not from the backend).

If the emulator and the backend shared a misreading of the docs, backend tests would pass for
the wrong reason; these tests pin the emulator to the documents themselves: which keys a
sparse mode lets a query see, that ``scale`` defaults to 1.0, that True masks, that TND
lengths are cumulative, and that the documented limits are enforced.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from npu_emulator import template_mask
from npu_emulator._checks import Unsupported

pytestmark = pytest.mark.npu_emulated
pytest_plugins = ["npu_emulator.fixtures"]


def visible_keys(fia, layout: str, q_len: int, kv_len: int, **kwargs) -> list[list[int]]:
    """Which keys each query row attends to: zero queries give uniform weights over the visible
    keys, and one-hot values (key j carries e_j) make them readable from the output."""
    head_dim = 16
    q = torch.zeros(1, q_len, 1, head_dim, dtype=torch.float16)
    v = torch.eye(kv_len, head_dim, dtype=torch.float16)[None, :, None, :].contiguous()
    k = torch.zeros_like(v)
    if layout == "TND":
        out, _ = fia(q[0], k[0], v[0], input_layout="TND", actual_seq_lengths=[q_len],
                     actual_seq_lengths_kv=[kv_len], **kwargs)
        rows = out[:, 0]
    else:
        out, _ = fia(q, k, v, input_layout="BSND", **kwargs)
        rows = out[0, :, 0]
    return [torch.nonzero(row[:kv_len] > 0).flatten().tolist() for row in rows]


def test_band_pre_tokens_excludes_the_query_itself(torch_npu_emulator):
    fia = torch_npu_emulator.npu_fused_infer_attention_score
    window = 3
    seen = visible_keys(fia, "BSND", 6, 6, sparse_mode=4, atten_mask=template_mask(), pre_tokens=window - 1,
                        next_tokens=0)
    assert seen == [[0], [0, 1], [0, 1, 2], [1, 2, 3], [2, 3, 4], [3, 4, 5]]
    wider = visible_keys(fia, "BSND", 6, 6, sparse_mode=4, atten_mask=template_mask(), pre_tokens=window,
                         next_tokens=0)
    assert wider[5] == [2, 3, 4, 5]  # passing W (as some peers do) shows W + 1 keys


def test_causal_modes_anchor_top_left_or_bottom_right(torch_npu_emulator):
    fia = torch_npu_emulator.npu_fused_infer_attention_score
    assert visible_keys(fia, "BSND", 2, 5, sparse_mode=2, atten_mask=template_mask()) == [[0], [0, 1]]
    assert visible_keys(fia, "BSND", 2, 5, sparse_mode=3, atten_mask=template_mask()) == [[0, 1, 2, 3], [0, 1, 2, 3, 4]]
    band = visible_keys(fia, "BSND", 2, 5, sparse_mode=4, atten_mask=template_mask(), pre_tokens=1, next_tokens=0)
    assert band == [[2, 3], [3, 4]]


def test_single_query_ignores_sparse_settings_outside_tnd_but_not_in_tnd(torch_npu_emulator):
    fia = torch_npu_emulator.npu_fused_infer_attention_score
    settings = dict(sparse_mode=4, pre_tokens=0, next_tokens=0)
    assert visible_keys(fia, "BSND", 1, 4, **settings) == [[0, 1, 2, 3]]
    with pytest.raises(Unsupported, match="Q_S = 1 the mask"):  # a decode mask is (B, KV_S), not the template
        visible_keys(fia, "BSND", 1, 4, atten_mask=template_mask(), **settings)
    settings["atten_mask"] = template_mask()
    head_dim = 128
    q = torch.zeros(1, 1, head_dim, dtype=torch.bfloat16)
    v = torch.eye(4, head_dim, dtype=torch.bfloat16)[:, None, :].contiguous()
    out, _ = fia(q, torch.zeros_like(v), v, input_layout="TND", actual_seq_lengths=[1], actual_seq_lengths_kv=[4],
                 **settings)
    assert torch.nonzero(out[0, 0, :4]).flatten().tolist() == [3]


def test_mask_true_means_masked_and_scale_defaults_to_one(torch_npu_emulator):
    fia = torch_npu_emulator.npu_fused_infer_attention_score
    mask = torch.zeros(1, 1, 3, 4, dtype=torch.bool)
    mask[0, 0, 0, 3] = True
    assert visible_keys(fia, "BSND", 3, 4, sparse_mode=1, atten_mask=mask)[0] == [0, 1, 2]

    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 2, 5, 16, dtype=torch.float16) for _ in range(3))
    out, _ = fia(q, k, v, num_heads=2, input_layout="BNSD")
    expected = torch.softmax(q.float() @ k.float().transpose(-1, -2), dim=-1) @ v.float()  # no 1/sqrt(d)
    torch.testing.assert_close(out.float(), expected, atol=2e-3, rtol=2e-3)
    scaled, _ = fia(q, k, v, num_heads=2, input_layout="BNSD", scale=1 / math.sqrt(16))
    assert not torch.allclose(scaled, out, atol=1e-2)


def test_tnd_lengths_are_cumulative_and_head_dim_is_limited(torch_npu_emulator):
    fia = torch_npu_emulator.npu_fused_infer_attention_score
    torch.manual_seed(0)
    q, k, v = (torch.randn(5, 2, 128, dtype=torch.bfloat16) for _ in range(3))
    out, _ = fia(q, k, v, num_heads=2, input_layout="TND", actual_seq_lengths=[2, 5], actual_seq_lengths_kv=[2, 5])
    second, _ = fia(q[2:], k[2:], v[2:], num_heads=2, input_layout="TND", actual_seq_lengths=[3],
                    actual_seq_lengths_kv=[3])
    torch.testing.assert_close(out[2:], second)
    with pytest.raises(Unsupported, match="cumulative"):
        fia(q, k, v, num_heads=2, input_layout="TND", actual_seq_lengths=[3, 2], actual_seq_lengths_kv=[3, 2])
    wide = torch.zeros(5, 1, 256, dtype=torch.bfloat16)
    with pytest.raises(Unsupported, match="head_dim 128 or 192"):
        fia(wide, wide, wide, input_layout="TND", actual_seq_lengths=[5], actual_seq_lengths_kv=[5])


def test_lengths_must_be_host_int_lists(torch_npu_emulator):
    x = torch.zeros(1, 4, 1, 16, dtype=torch.float16)
    with pytest.raises(TypeError, match="SymInt"):
        torch_npu_emulator.npu_fused_infer_attention_score(x, x, x, input_layout="BSND",
                                                           actual_seq_lengths=torch.tensor([4]))


def test_sparse_modes_need_the_upper_triangular_template(torch_npu_emulator):
    fia = torch_npu_emulator.npu_fused_infer_attention_score
    with pytest.raises(Unsupported, match="masked"):
        visible_keys(fia, "BSND", 3, 3, sparse_mode=3, atten_mask=~template_mask())
    with pytest.raises(Unsupported, match="template"):
        visible_keys(fia, "BSND", 3, 3, sparse_mode=3)
    with pytest.raises(Unsupported, match="not supported"):
        visible_keys(fia, "BSND", 3, 3, sparse_mode=6, atten_mask=template_mask())


def paged_copy(keys: torch.Tensor, block_size: int, order: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Store ``keys`` ``[S, G*D]`` in cache blocks listed in ``order``; return cache and int32 table."""
    cache = torch.zeros(max(order) + 1, block_size, keys.shape[-1], dtype=keys.dtype)
    for i, block in enumerate(order):
        chunk = keys[i * block_size:(i + 1) * block_size]
        cache[block, :chunk.shape[0]] = chunk
    return cache, torch.tensor([order], dtype=torch.int32)


def test_paged_attention_reads_blocks_through_the_table(torch_npu_emulator):
    fia = torch_npu_emulator.npu_fused_infer_attention_score
    torch.manual_seed(0)
    n_kv, head_dim, kv_len = 2, 32, 300
    q = torch.randn(1, 3, 4, head_dim, dtype=torch.bfloat16)
    k, v = (torch.randn(1, kv_len, n_kv, head_dim, dtype=torch.bfloat16) for _ in range(2))
    dense, _ = fia(q, k, v, num_heads=4, num_key_value_heads=n_kv, input_layout="BSND", sparse_mode=3,
                   atten_mask=template_mask(), actual_seq_lengths_kv=[kv_len])
    key_cache, table = paged_copy(k[0].reshape(kv_len, -1), 128, [5, 0, 3])
    value_cache, _ = paged_copy(v[0].reshape(kv_len, -1), 128, [5, 0, 3])
    paged, _ = fia(q, key_cache, value_cache, num_heads=4, num_key_value_heads=n_kv, input_layout="BSND",
                   sparse_mode=3, atten_mask=template_mask(), block_table=table, block_size=128,
                   actual_seq_lengths_kv=[kv_len])
    torch.testing.assert_close(paged, dense)

    small_cache, small_table = paged_copy(k[0].reshape(kv_len, -1), 64, [4, 0, 3, 1, 2])
    with pytest.raises(Unsupported, match="multiple of 128"):
        fia(q, small_cache, small_cache, num_heads=4, num_key_value_heads=n_kv, input_layout="BSND",
            block_table=small_table, block_size=64, actual_seq_lengths_kv=[kv_len])
    decode, _ = fia(q[:, :1], small_cache, small_cache, num_heads=4, num_key_value_heads=n_kv, input_layout="BSND",
                    block_table=small_table, block_size=64, actual_seq_lengths_kv=[kv_len])
    assert decode.shape == (1, 1, 4, head_dim)
    stale = table.clone()
    stale[0, 1] = 99
    with pytest.raises(Unsupported, match="outside the cache"):
        fia(q, key_cache, value_cache, num_heads=4, num_key_value_heads=n_kv, input_layout="BSND", sparse_mode=3,
            atten_mask=template_mask(), block_table=stale, block_size=128, actual_seq_lengths_kv=[kv_len])


def test_scatter_pa_kv_cache_needs_norm_mode_and_unique_slots(torch_npu_emulator):
    scatter = torch_npu_emulator.npu_scatter_pa_kv_cache
    key = torch.arange(2 * 3 * 4, dtype=torch.float16).view(2, 3, 4)
    cache = torch.zeros(2, 16, 3, 4, dtype=torch.float16)
    values = torch.zeros_like(cache)
    with pytest.raises(NotImplementedError, match="Norm"):
        scatter(key, key, cache, values, torch.tensor([1, 17]))
    scatter(key, key, cache, values, torch.tensor([1, 17]), cache_mode="Norm")
    assert torch.equal(cache[0, 1], key[0]) and torch.equal(cache[1, 1], key[1])
    with pytest.raises(Unsupported, match="unique"):
        scatter(key, key, cache, values, torch.tensor([3, 3]), cache_mode="Norm")


def test_rotary_ops_follow_rotate_half_and_their_head_dim_limits(torch_npu_emulator):
    x = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 1, 1, 4)
    zeros, ones = torch.zeros_like(x), torch.ones_like(x)
    rotated = torch_npu_emulator.npu_rotary_mul(x, zeros, ones)
    assert rotated.flatten().tolist() == [-3.0, -4.0, 1.0, 2.0]

    q = torch.randn(1, 3, 2, 128)
    k = torch.randn(1, 3, 1, 128)
    cos, sin = torch.randn(1, 3, 1, 128), torch.randn(1, 3, 1, 128)
    expected = torch_npu_emulator.npu_rotary_mul(q, cos.expand(1, 3, 1, 128).contiguous(), sin.contiguous())
    q_out, _ = torch_npu_emulator.npu_apply_rotary_pos_emb(q, k, cos, sin)
    assert q_out is q and torch.allclose(q, expected)  # updated in place
    wide = torch.randn(1, 3, 1, 256)
    with pytest.raises(Unsupported, match="64 or 128"):
        torch_npu_emulator.npu_apply_rotary_pos_emb(wide, wide.clone(), wide[..., :256], wide[..., :256])


def test_rms_norm_and_swiglu_outputs(torch_npu_emulator):
    x = torch.tensor([[3.0, 4.0]])
    y, rstd = torch_npu_emulator.npu_rms_norm(x, torch.tensor([1.0, 2.0]), epsilon=0.0)
    assert rstd.dtype == torch.float32
    torch.testing.assert_close(y, torch.tensor([[3.0, 8.0]]) / math.sqrt(12.5))
    out = torch_npu_emulator.npu_swiglu(torch.tensor([[2.0, 5.0]]))
    torch.testing.assert_close(out, F.silu(torch.tensor([[2.0]])) * 5.0)  # the first half is activated


def test_fusion_attention_masks_true_rejects_empty_rows_and_has_a_gradient(torch_npu_emulator):
    attention = torch_npu_emulator.npu_fusion_attention
    q = torch.zeros(1, 3, 1, 16, requires_grad=True)
    v = torch.eye(3, 16)[None, :, None, :].contiguous()
    mask = torch.triu(torch.ones(3, 3, dtype=torch.bool), diagonal=1)[None, None]
    out = attention(q, torch.zeros_like(v), v, 1, "BSND", atten_mask=mask)[0]
    assert torch.nonzero(out[0, 1, 0] > 0).flatten().tolist() == [0, 1]
    out.sum().backward()
    assert q.grad is not None
    empty = mask.clone()
    empty[..., 0, :] = True
    with pytest.raises(Unsupported, match="fully masked"):
        attention(q, torch.zeros_like(v), v, 1, "BSND", atten_mask=empty)
