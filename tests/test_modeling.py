"""The model against an independent re-statement of architecture.md §2, and against itself across
batching and caching modes (full forward vs. incremental decoding, padded batch vs. alone)."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import build_tiny_model

from m1_ascend.config import BaichuanM1Config
from m1_ascend.modeling import BaichuanM1Cache, BaichuanM1ForCausalLM

PROMPT_LEN = 20  # longer than the tiny preset's sliding window of 8


def randomized_model(seed: int = 0) -> BaichuanM1ForCausalLM:
    """The tiny model with every parameter (norms and conv taps included) drawn at a scale where
    attention, the conv and the norms all shape the logits visibly."""
    model = build_tiny_model(seed)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=gen)
            if name.endswith("layernorm.weight") or name == "model.norm.weight":
                param.copy_(1.0 + 0.3 * noise)
            elif "conv_" in name:
                param.copy_(noise)
            else:
                param.copy_(noise / math.sqrt(param.shape[-1]))
    return model


def prompt(length: int = PROMPT_LEN, seed: int = 0, vocab: int = 320) -> torch.Tensor:
    return torch.randint(3, vocab, (length,), generator=torch.Generator().manual_seed(seed))


# ---- an independent statement of the math, in float64 with explicit loops -------------------------

def rms(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    return weight * (x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps))


def rope(x: torch.Tensor, position: int, theta: float) -> torch.Tensor:
    """GPT-NeoX rotate-half on one head vector: pairs (j, j + d/2) rotated by position * theta^(-2j/d)."""
    d = x.shape[-1]
    out = torch.empty_like(x)
    for j in range(d // 2):
        angle = position * theta ** (-2.0 * j / d)
        c, s = math.cos(angle), math.sin(angle)
        out[j] = x[j] * c - x[j + d // 2] * s
        out[j + d // 2] = x[j + d // 2] * c + x[j] * s
    return out


def reference_logits(state: dict[str, torch.Tensor], config: BaichuanM1Config, ids: list[int],
                     positions: list[int] | None = None, swap_conv_taps: bool = False) -> torch.Tensor:
    """Logits ``[T, vocab]`` of one unpadded sequence, straight from the spec's formulas."""
    p = {k: v.double() for k, v in state.items()}
    positions = list(range(len(ids))) if positions is None else positions
    T, H, eps = len(ids), config.hidden_size, config.rms_norm_eps
    x = p["model.embed_tokens.weight"][ids]
    for layer in range(config.num_hidden_layers):
        pre = f"model.layers.{layer}."
        sliding = layer in config.sliding_window_layers
        n_h = config.num_swa_attention_heads if sliding else config.num_attention_heads
        n_kv = config.num_swa_key_value_heads if sliding else config.num_key_value_heads
        d = H // n_h
        a = rms(x, p[pre + "input_layernorm.weight"], eps)
        packed = a @ p[pre + "self_attn.W_pack.weight"].T
        q = packed[:, :H].reshape(T, n_h, d)
        k = packed[:, H:H + n_kv * d].reshape(T, n_kv, d)
        v = packed[:, H + n_kv * d:].reshape(T, n_kv, d)
        taps_k = p[pre + "self_attn.conv_k"].reshape(n_kv, 2)
        taps_v = p[pre + "self_attn.conv_v"].reshape(n_kv, 2)
        if swap_conv_taps:
            taps_k, taps_v = taps_k.flip(-1), taps_v.flip(-1)
        k_conv, v_conv = torch.zeros_like(k), torch.zeros_like(v)
        for t in range(T):
            for g in range(n_kv):  # tap 0 weighs the previous token (zero before the start)
                k_prev = k[t - 1, g] if t > 0 else torch.zeros(d, dtype=k.dtype)
                v_prev = v[t - 1, g] if t > 0 else torch.zeros(d, dtype=v.dtype)
                k_conv[t, g] = taps_k[g, 0] * k_prev + taps_k[g, 1] * k[t, g]
                v_conv[t, g] = taps_v[g, 0] * v_prev + taps_v[g, 1] * v[t, g]
        q_rot = torch.stack([torch.stack([rope(q[t, h], positions[t], config.rope_theta) for h in range(n_h)])
                             for t in range(T)])
        k_rot = torch.stack([torch.stack([rope(k_conv[t, g], positions[t], config.rope_theta) for g in range(n_kv)])
                             for t in range(T)])
        heads = torch.zeros(T, n_h, d, dtype=x.dtype)
        for h in range(n_h):
            g = h // (n_h // n_kv)
            for t in range(T):
                visible = [s for s in range(T) if positions[s] <= positions[t]
                           and (not sliding or positions[s] > positions[t] - config.sliding_window)]
                scores = torch.stack([q_rot[t, h] @ k_rot[s, g] for s in visible]) / math.sqrt(d)
                weights = torch.softmax(scores, dim=0)
                heads[t, h] = sum(w * v_conv[s, g] for w, s in zip(weights, visible, strict=True))
        x = x + heads.reshape(T, H) @ p[pre + "self_attn.o_proj.weight"].T
        m = rms(x, p[pre + "post_attention_layernorm.weight"], eps)
        gate = m @ p[pre + "mlp.gate_proj.weight"].T
        up = m @ p[pre + "mlp.up_proj.weight"].T
        x = x + (gate * torch.sigmoid(gate) * up) @ p[pre + "mlp.down_proj.weight"].T
    z = rms(x, p["model.norm.weight"], eps)
    head = p["lm_head.weight"]
    head = head / head.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    return z @ head.T


# ---- the model against the reference -----------------------------------------------------------------

@pytest.fixture(scope="module")
def model() -> BaichuanM1ForCausalLM:
    return randomized_model()


@torch.no_grad()
def test_matches_independent_reference(model: BaichuanM1ForCausalLM) -> None:
    ids = prompt()
    got = model(ids[None]).logits[0].double()
    want = reference_logits(model.state_dict(), model.config, ids.tolist())
    assert want.abs().max() > 1.0  # the comparison is not between near-zero numbers
    torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-5)


@torch.no_grad()
def test_reference_detects_a_wrong_conv_tap_order(model: BaichuanM1ForCausalLM) -> None:
    ids = prompt()
    got = model(ids[None]).logits[0].double()
    swapped = reference_logits(model.state_dict(), model.config, ids.tolist(), swap_conv_taps=True)
    assert (got - swapped).abs().max() > 0.1


@torch.no_grad()
def test_position_ids_are_respected(model: BaichuanM1ForCausalLM) -> None:
    ids = prompt(12)
    positions = [0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 18, 30]  # gaps move tokens in and out of the window
    got = model(ids[None], position_ids=torch.tensor([positions])).logits[0].double()
    want = reference_logits(model.state_dict(), model.config, ids.tolist(), positions=positions)
    torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-5)
    default = model(ids[None]).logits[0].double()
    assert (got - default).abs().max() > 1e-2


# ---- the model against itself ------------------------------------------------------------------------

@torch.no_grad()
@pytest.mark.parametrize("chunk", [1, 3])
def test_full_forward_equals_incremental_decoding(model: BaichuanM1ForCausalLM, chunk: int) -> None:
    ids = prompt()
    full = model(ids[None]).logits[0]
    cache = BaichuanM1Cache()
    pieces = [model(ids[None, :5], past_key_values=cache).logits[0]]
    for start in range(5, PROMPT_LEN, chunk):
        pieces.append(model(ids[None, start:start + chunk], past_key_values=cache).logits[0])
    assert cache.get_seq_length() == PROMPT_LEN
    torch.testing.assert_close(torch.cat(pieces), full, atol=1e-5, rtol=0)


@torch.no_grad()
def test_left_padded_batch_equals_each_sequence_alone(model: BaichuanM1ForCausalLM) -> None:
    lengths = [PROMPT_LEN, 13, 6]
    prompts = [prompt(n, seed=i) for i, n in enumerate(lengths)]
    width = max(lengths)
    ids = torch.zeros(len(prompts), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, p in enumerate(prompts):
        ids[row, width - len(p):] = p
        mask[row, width - len(p):] = 1
    cache = BaichuanM1Cache()
    batch_logits = model(ids, attention_mask=mask, past_key_values=cache).logits
    next_ids = torch.tensor([[5], [6], [7]])
    mask = torch.cat([mask, torch.ones(len(prompts), 1, dtype=torch.long)], dim=1)
    batch_step = model(next_ids, attention_mask=mask, past_key_values=cache).logits
    for row, p in enumerate(prompts):
        alone_cache = BaichuanM1Cache()
        alone = model(p[None], past_key_values=alone_cache).logits[0]
        torch.testing.assert_close(batch_logits[row, width - len(p):], alone, atol=1e-5, rtol=0)
        alone_step = model(next_ids[row:row + 1], past_key_values=alone_cache).logits[0]
        torch.testing.assert_close(batch_step[row], alone_step, atol=1e-5, rtol=0)


@torch.no_grad()
def test_generate_greedy_equals_manual_argmax(model: BaichuanM1ForCausalLM) -> None:
    ids = prompt(10)
    generated = model.generate(ids[None], max_new_tokens=8, do_sample=False, eos_token_id=None, pad_token_id=0)
    manual = ids.tolist()
    for _ in range(8):  # no cache: the whole sequence again at every step
        manual.append(int(model(torch.tensor([manual]), use_cache=False).logits[0, -1].argmax()))
    assert generated[0].tolist() == manual


@torch.no_grad()
def test_generate_on_a_left_padded_batch_equals_each_prompt_alone(model: BaichuanM1ForCausalLM) -> None:
    prompts = [prompt(12, seed=1), prompt(5, seed=2)]
    ids = torch.zeros(2, 12, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, p in enumerate(prompts):
        ids[row, 12 - len(p):] = p
        mask[row, 12 - len(p):] = 1
    batch = model.generate(ids, attention_mask=mask, max_new_tokens=6, do_sample=False, eos_token_id=None,
                           pad_token_id=0)
    for row, p in enumerate(prompts):
        alone = model.generate(p[None], max_new_tokens=6, do_sample=False, eos_token_id=None, pad_token_id=0)
        assert batch[row, 12:].tolist() == alone[0, len(p):].tolist()


@torch.no_grad()
def test_bfloat16_runs_close_to_float32() -> None:
    model = randomized_model()
    ids = prompt()
    fp32 = model(ids[None]).logits[0]
    model.to(torch.bfloat16)
    cache = BaichuanM1Cache()
    bf16 = model(ids[None, :12], past_key_values=cache).logits[0]
    bf16 = torch.cat([bf16, model(ids[None, 12:], past_key_values=cache).logits[0]])
    assert bf16.dtype == torch.bfloat16
    assert torch.isfinite(bf16).all()
    assert (bf16.float() - fp32).abs().max() < 0.05 * fp32.abs().max()
    agree = (bf16.float().argmax(-1) == fp32.argmax(-1)).float().mean()
    assert agree >= 0.8
