"""The whole model and the whole engine on the NPU backend against the CPU reference.

Runs on the torch_npu emulator (``npu_emulated``) and, with ``pytest -m npu``, on a 910B.

Two model shapes: ``m1_shaped`` keeps Baichuan-M1's head dims (global 256 -> padded-BSND FIA,
sliding 128 -> TND FIA) at a CPU-friendly width; the ``tiny`` preset (head dims 32/16, window
8) runs every attention through the non-TND paths, including windowed single-token decode
(trimmed block table + pse_shift). Both run in bf16, the dtype FIA takes. Logits are captured
with a forward hook on ``lm_head`` or as the engine's logprobs; greedy tokens must be the reference's
up to bf16 near-ties (``engine_testing.assert_greedy_up_to_ties``) and logits close.
"""

from __future__ import annotations

import copy

import pytest
import torch
from engine_testing import assert_greedy_up_to_ties

from m1_ascend import BaichuanM1ForCausalLM, preset_config
from m1_ascend.engine import SamplingParams
from m1_ascend.engine.llm_engine import LLMEngine

pytest_plugins = ["npu_emulator.fixtures"]

WINDOW = 160


def assert_logits_close(got: torch.Tensor, want: torch.Tensor) -> None:
    """Within 8 bf16 ulps of the largest logit. Fused ops round once where the reference rounds
    twice, and over a few layers that moves logits by a few ulps; the bf16 reference itself is
    further than that from the fp32 model (see the HF test)."""
    torch.testing.assert_close(got, want, rtol=0, atol=8 * 2 ** -8 * float(want.abs().max()))


def build(seed: int, **overrides: object) -> BaichuanM1ForCausalLM:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BaichuanM1ForCausalLM(preset_config("tiny", initializer_range=0.1, **overrides)).eval()
    return model.to(torch.bfloat16)


def m1_shaped(seed: int = 0) -> BaichuanM1ForCausalLM:
    """Global layer 2 heads x 256 (1 KV head), sliding layer 4 heads x 128 (2 KV heads)."""
    return build(seed, hidden_size=512, intermediate_size=512, num_hidden_layers=2, num_attention_heads=2,
                 num_key_value_heads=1, num_swa_attention_heads=4, num_swa_key_value_heads=2,
                 sliding_window=WINDOW, max_position_embeddings=1024)


class LogitRecorder:
    """Collects every ``lm_head`` output (one tensor per engine step or forward)."""

    def __init__(self, model: BaichuanM1ForCausalLM) -> None:
        self.logits: list[torch.Tensor] = []
        model.lm_head.register_forward_hook(lambda _module, _args, out: self.logits.append(out.detach().float().cpu()))


def test_hf_forward_and_generate_match_reference(npu_target):
    ref_model = m1_shaped()
    npu_model = copy.deepcopy(ref_model).to(npu_target.device)
    backend = npu_target.backend()
    npu_model.set_kernel_backend(backend)
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 320, (2, 200), generator=gen)  # longer than the window
    mask = torch.ones_like(ids)
    mask[1, :30] = 0  # left padding
    dev = npu_target.device
    with torch.no_grad():
        want = ref_model(ids, attention_mask=mask).logits.float()[mask.bool()]
        got = npu_model(ids.to(dev), attention_mask=mask.to(dev)).logits.float().cpu()[mask.bool()]
        exact = copy.deepcopy(ref_model).float()(ids, attention_mask=mask).logits[mask.bool()]
    assert_logits_close(got, want)
    # The NPU path is as accurate as the bf16 reference, measured against the fp32 model.
    assert (got - exact).abs().max() <= 1.25 * (want - exact).abs().max()

    npu_rec = LogitRecorder(npu_model)
    greedy = dict(max_new_tokens=12, do_sample=False, pad_token_id=0)
    with torch.no_grad():
        got_ids = npu_model.generate(ids[:1].to(dev), **greedy).cpu()[0].tolist()
    steps = torch.cat([rows[0, -1:] if rows.dim() == 3 else rows[-1:] for rows in npu_rec.logits])
    assert_greedy_up_to_ties(ref_model, ids[0].tolist(), got_ids[ids.shape[1]:], steps)
    assert set(backend.fallbacks) <= {"conv_kv"}  # everything else ran fused (conv_kv: fused only with the custom op)


def run_engine(model: BaichuanM1ForCausalLM, device: str, backend, prompts: list[list[int]], max_tokens: int,
               **engine_options: object) -> list:
    """First prompt alone (it fills the prefix cache), then the rest together; greedy decoding."""
    engine = LLMEngine(model=model, device=device, backend=backend, **engine_options)
    params = SamplingParams(temperature=0, max_tokens=max_tokens, ignore_eos=True, logprobs=0)
    outputs = []
    for group in (prompts[:1], prompts[1:]):
        for prompt in group:
            engine.add_request(f"r{len(outputs)}", prompt, params)
            outputs.append(None)
        while engine.has_unfinished_requests():
            for out in engine.step():
                if out.finished:
                    outputs[int(out.request_id[1:])] = out
    return outputs


@pytest.mark.parametrize("shape", ["m1_shaped", "tiny"])
def test_engine_greedy_tokens_match_reference(npu_target, shape):
    model = m1_shaped() if shape == "m1_shaped" else build(0)
    gen = torch.Generator().manual_seed(1)
    shared = torch.randint(3, 320, (260,), generator=gen).tolist()
    prompts = [shared + torch.randint(3, 320, (n,), generator=gen).tolist() for n in (30, 12, 41)]
    # 96 tokens per step: prompts are prefilled in chunks; bf16 because FIA takes fp16/bf16 only
    options = dict(block_size=128, max_num_batched_tokens=96, max_num_seqs=4, dtype=torch.bfloat16)
    backend = npu_target.backend()
    device = "cpu" if npu_target.emulated else "npu"
    got = run_engine(copy.deepcopy(model), device, backend, prompts, 6, **options)
    for prompt, output in zip(prompts, got, strict=True):
        assert_greedy_up_to_ties(model, prompt, output.token_ids, logprobs=[lp.logprob for lp in output.logprobs])
    assert all(o.num_cached_tokens >= 128 for o in got[1:])  # prefix-cache hits
    assert "paged_attention" not in backend.fallbacks
