"""Shared pieces of the engine tests: tiny models, the plain-model greedy reference, run-to-end helpers."""

from __future__ import annotations

import torch

from m1_ascend import BaichuanM1ForCausalLM, preset_config
from m1_ascend.engine import SamplingParams
from m1_ascend.engine.llm_engine import LLMEngine
from m1_ascend.engine.memory_plan import conv_state_bytes_per_sequence, global_block_bytes, sliding_block_bytes
from m1_ascend.engine.outputs import RequestOutput
from m1_ascend.modeling import BaichuanM1Cache

# The tiny preset has sliding_window=8; with 4-token blocks a sliding layer needs 3 blocks.
BLOCK_SIZE = 4
GREEDY = SamplingParams(temperature=0, max_tokens=10, ignore_eos=True)


def tiny_model(seed: int = 0, **overrides: object) -> BaichuanM1ForCausalLM:
    """The ``tiny`` preset with a larger init, so attention and the conv visibly shape the logits."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return BaichuanM1ForCausalLM(preset_config("tiny", initializer_range=0.1, **overrides)).eval()


def random_prompts(lengths: list[int], vocab: int = 320, seed: int = 1, prefix: list[int] | None = None) -> list[list[int]]:
    gen = torch.Generator().manual_seed(seed)
    return [(prefix or []) + torch.randint(3, vocab, (n,), generator=gen).tolist() for n in lengths]


@torch.no_grad()
def reference_greedy(model: BaichuanM1ForCausalLM, prompt: list[int], max_tokens: int) -> list[int]:
    """One sequence, prefill then one token at a time, through the transformers-style cache."""
    cache = BaichuanM1Cache()
    logits = model(torch.tensor([prompt]), past_key_values=cache).logits[0, -1]
    out: list[int] = []
    for _ in range(max_tokens):
        out.append(int(logits.argmax()))
        logits = model(torch.tensor([[out[-1]]]), past_key_values=cache).logits[0, -1]
    return out


def run_to_end(engine: LLMEngine, prompts: list[list[int]], params: SamplingParams | list[SamplingParams] = GREEDY,
               prefix: str = "r") -> list[RequestOutput]:
    """Submit all prompts at once and step until every one has finished; outputs in prompt order."""
    params_list = params if isinstance(params, list) else [params] * len(prompts)
    for i, (prompt, p) in enumerate(zip(prompts, params_list, strict=True)):
        engine.add_request(f"{prefix}{i}", prompt, p)
    done: dict[str, RequestOutput] = {}
    while engine.has_unfinished_requests():
        for output in engine.step():
            if output.finished:
                done[output.request_id] = output
    return [done[f"{prefix}{i}"] for i in range(len(prompts))]


def kv_bytes_for(model: BaichuanM1ForCausalLM, num_blocks: int, max_num_seqs: int, block_size: int = BLOCK_SIZE,
                 prefix_caching: bool = True) -> int:
    """A ``kv_cache_memory`` that gives both pools ``num_blocks`` blocks (used to force preemption)."""
    config, dtype_bytes = model.config, next(model.parameters()).element_size()
    per_block = (global_block_bytes(config, block_size, dtype_bytes, prefix_caching)
                 + sliding_block_bytes(config, block_size, dtype_bytes))
    return num_blocks * per_block + max_num_seqs * conv_state_bytes_per_sequence(config, dtype_bytes)


@torch.no_grad()
def assert_greedy_up_to_ties(reference: BaichuanM1ForCausalLM, prompt: list[int], tokens: list[int],
                             logits: torch.Tensor | None = None, logprobs: list[float] | None = None,
                             ulps: int = 8) -> None:
    """``tokens`` are the reference's greedy continuation of ``prompt`` up to near-ties in bf16.

    Two bf16 kernel paths round differently, and with random weights the top two logits are often
    within an ulp of each other, so a different pick at a near-tie is right and everything after
    it differs. So: teacher-force the reference over ``prompt + tokens``; each token must be its
    argmax within ``ulps`` bf16 steps of the largest logit, and the other path's ``logits`` (one
    row per token) or the ``logprobs`` of its tokens, if given, must match the reference's within
    the same tolerance (twice it for a log-probability, which also moves with the normaliser).
    """
    expected = reference(torch.tensor([prompt + tokens])).logits[0].float()[len(prompt) - 1:-1]
    atol = ulps * 2 ** -8 * float(expected.abs().max())
    picked = expected.gather(1, torch.tensor(tokens)[:, None]).squeeze(1)
    assert (expected.max(dim=-1).values - picked <= atol).all(), "a greedy pick differs from the reference's"
    if logits is not None:
        torch.testing.assert_close(logits.float(), expected, rtol=0, atol=atol)
    if logprobs is not None:
        want = torch.log_softmax(expected, dim=-1).gather(1, torch.tensor(tokens)[:, None]).squeeze(1)
        torch.testing.assert_close(torch.tensor(logprobs), want, rtol=0, atol=2 * atol)
