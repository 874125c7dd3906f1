"""Engine features behind the OpenAI fields: logprobs, penalties, logit_bias, min_tokens, grammars, siblings,
adapter identity in the prefix cache, and tensor prompts in ``LLM.generate``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from engine_testing import BLOCK_SIZE, random_prompts, run_to_end, tiny_model
from finetune_testing import random_adapter

from m1_ascend import LLM
from m1_ascend.engine import SamplingParams
from m1_ascend.engine.llm_engine import LLMEngine
from m1_ascend.engine.sampler import apply_openai_penalties
from m1_ascend.engine.structured_output import GrammarSpec

SCHEMA = {"type": "object", "additionalProperties": False, "required": ["diagnosis", "severity", "codes"],
          "properties": {"diagnosis": {"type": "string"}, "severity": {"type": "integer", "minimum": 0},
                         "codes": {"type": "array", "items": {"type": "string"}}}}


@pytest.fixture(scope="module")
def model():
    return tiny_model()


def engine_for(model, **kwargs) -> LLMEngine:
    return LLMEngine(model, block_size=BLOCK_SIZE, max_num_seqs=8, max_num_batched_tokens=64, **kwargs)


@torch.no_grad()
def plain_logprobs(model, ids: list[int]) -> torch.Tensor:
    """log-softmax of a plain forward pass: row ``t`` is the distribution of token ``t + 1``."""
    return torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), dim=-1)


def test_logprobs_are_the_models_raw_distribution(model):
    prompt = random_prompts([11], seed=5)[0]
    # Sampling processors change which tokens come out, but not the reported distribution.
    params = SamplingParams(temperature=0.8, presence_penalty=1.5, frequency_penalty=0.5, logit_bias={7: 5.0},
                            max_tokens=6, seed=3, ignore_eos=True, logprobs=4, prompt_logprobs=2)
    out = run_to_end(engine_for(model), [prompt], params)[0]
    reference = plain_logprobs(model, prompt + out.token_ids)
    assert out.prompt_logprobs[0] is None and len(out.prompt_logprobs) == len(prompt)
    for t, entry in enumerate(out.prompt_logprobs[1:], start=1):
        assert entry.token_id == prompt[t]
        assert entry.logprob == pytest.approx(reference[t - 1, prompt[t]].item(), abs=1e-4)
        assert [i for i, _ in entry.top] == reference[t - 1].topk(2).indices.tolist()
    assert [e.token_id for e in out.logprobs] == out.token_ids
    for j, entry in enumerate(out.logprobs):
        row = reference[len(prompt) - 1 + j]
        assert entry.logprob == pytest.approx(row[entry.token_id].item(), abs=1e-4)
        assert [v for _, v in entry.top] == pytest.approx(row.topk(4).values.tolist(), abs=1e-4)


def test_prompt_logprobs_are_exact_after_a_prefix_cache_hit_and_chunking(model):
    shared = random_prompts([13], seed=6)[0]
    engine = LLMEngine(model, block_size=BLOCK_SIZE, max_num_seqs=4, max_num_batched_tokens=5)
    run_to_end(engine, [shared + [9]], SamplingParams(temperature=0, max_tokens=1), prefix="warm")
    out = run_to_end(engine, [shared + [10]], SamplingParams(temperature=0, max_tokens=1, prompt_logprobs=0))[0]
    reference = plain_logprobs(model, shared + [10])
    got = [e.logprob for e in out.prompt_logprobs[1:]]
    assert got == pytest.approx([reference[t - 1, (shared + [10])[t]].item() for t in range(1, 14)], abs=1e-4)


def test_openai_penalty_formula():
    logits = torch.zeros(2, 5)
    apply_openai_penalties(logits, [[1, 1, 3], [2]], presence=[0.5, 0.0], frequency=[1.0, 0.0])
    assert logits.tolist() == [[0, -2.5, 0, -1.5, 0], [0, 0, 0, 0, 0]]


def test_presence_penalty_stops_repeats_and_logit_bias_forces_a_token(model):
    prompt = random_prompts([9], seed=7)[0]
    plain = run_to_end(engine_for(model), [prompt], SamplingParams(temperature=0, max_tokens=20, ignore_eos=True))[0]
    assert len(set(plain.token_ids)) < 20  # greedy on the random model repeats itself
    penalized = run_to_end(engine_for(model), [prompt], SamplingParams(temperature=0, max_tokens=20, ignore_eos=True,
                                                                       presence_penalty=2.0, frequency_penalty=2.0,
                                                                       logit_bias={}))[0]
    assert penalized.token_ids != plain.token_ids
    biased = run_to_end(engine_for(model), [prompt], SamplingParams(temperature=1.0, max_tokens=5, ignore_eos=True,
                                                                    logit_bias={123: 100.0}, seed=1))[0]
    assert biased.token_ids == [123] * 5


def test_min_tokens_holds_back_the_stop_id(model):
    prompt = random_prompts([9], seed=8)[0]
    first = run_to_end(engine_for(model), [prompt], SamplingParams(temperature=0, max_tokens=1))[0].token_ids[0]
    eos_model = tiny_model(eos_token_id=first)
    assert run_to_end(engine_for(eos_model), [prompt], SamplingParams(temperature=0, max_tokens=8))[0].token_ids == [first]
    out = run_to_end(engine_for(eos_model), [prompt], SamplingParams(temperature=0, max_tokens=8, min_tokens=3))[0]
    assert len(out.token_ids) >= 3 and first not in out.token_ids[:3]


def conforms(value: dict) -> bool:
    return (set(value) == {"diagnosis", "severity", "codes"} and isinstance(value["diagnosis"], str)
            and isinstance(value["severity"], int) and value["severity"] >= 0
            and all(isinstance(c, str) for c in value["codes"]))


@pytest.mark.parametrize("max_tokens", [40, 64, 160])
def test_json_schema_output_parses_validates_and_ends(model, tokenizer, max_tokens):
    """A random model under a grammar: every output is a valid instance, ended by the grammar within budget."""
    engine = engine_for(model, tokenizer=tokenizer)
    prompts = random_prompts([5, 9, 14, 6], seed=9)
    params = [SamplingParams(temperature=t, max_tokens=max_tokens, seed=s, grammar=GrammarSpec.json_schema(SCHEMA))
              for t, s in ((0, None), (1.0, 1), (1.5, 2), (0.7, 3))]
    for out in run_to_end(engine, prompts, params):
        assert out.finish_reason == "stop", out.text
        assert conforms(json.loads(out.text)), out.text
    # Mixed batch: a free request next to constrained ones is not constrained.
    free = run_to_end(engine, prompts[:1], SamplingParams(temperature=0, max_tokens=12, ignore_eos=True), prefix="f")
    assert not free[0].text.startswith("{")


def test_json_object_and_lark_grammars(model, tokenizer):
    engine = engine_for(model, tokenizer=tokenizer)
    out = run_to_end(engine, random_prompts([6], seed=10),
                     SamplingParams(temperature=1.0, seed=4, max_tokens=30, grammar=GrammarSpec.json_object()))[0]
    assert isinstance(json.loads(out.text), dict) and out.finish_reason == "stop"
    lark = GrammarSpec.lark('start: "yes" | "no"')
    out = run_to_end(engine, random_prompts([6], seed=11), SamplingParams(temperature=1.0, max_tokens=8, grammar=lark),
                     prefix="l")[0]
    assert out.text in ("yes", "no")


def test_siblings_start_from_the_leaders_cached_prompt(model):
    engine = engine_for(model)
    prompt = random_prompts([18], seed=12)[0]
    params = SamplingParams(temperature=1.0, max_tokens=4, ignore_eos=True)
    engine.add_request("c0", prompt, params)
    for i in (1, 2):
        engine.add_request(f"c{i}", prompt, SamplingParams(temperature=1.0, max_tokens=4, ignore_eos=True, seed=i),
                           leader="c0")
    done = {}
    while engine.has_unfinished_requests():
        done.update({o.request_id: o for o in engine.step() if o.finished})
    assert done["c0"].num_cached_tokens == 0
    assert done["c1"].num_cached_tokens == done["c2"].num_cached_tokens == 16  # every full block of the prompt
    assert engine.block_manager.all_free()


def test_replaced_adapter_does_not_reuse_cached_blocks(tiny_model_dir, tmp_path: Path):
    """Issue 15.2: same adapter name, other weights: the prefix cache must not serve the old K/V."""
    first = random_adapter(tiny_model_dir, tmp_path / "a1", seed=31)
    second = random_adapter(tiny_model_dir, tmp_path / "a2", seed=32)
    prompt = random_prompts([40], seed=13)[0]
    params = SamplingParams(temperature=0, max_tokens=6, ignore_eos=True)
    engine = LLMEngine(tiny_model_dir, block_size=BLOCK_SIZE, max_num_seqs=2, adapters={"a": first})
    engine.add_request("old", prompt, params, adapter="a")
    while engine.has_unfinished_requests():
        engine.step()
    engine.adapters.remove("a")
    engine.adapters.add("a", second)
    engine.add_request("new", prompt, params, adapter="a")
    outputs = []
    while engine.has_unfinished_requests():
        outputs += engine.step()
    replaced = outputs[-1]
    fresh = LLMEngine(tiny_model_dir, block_size=BLOCK_SIZE, max_num_seqs=2, adapters={"a": second})
    fresh.add_request("x", prompt, params, adapter="a")
    expected = []
    while fresh.has_unfinished_requests():
        expected += fresh.step()
    assert replaced.num_cached_tokens == 0
    assert replaced.token_ids == expected[-1].token_ids


def test_generate_accepts_tensors_and_arrays(tiny_model):
    """Issue 15.4: 1-D tensors/arrays are one prompt; lists of them and 2-D ones are batches."""
    llm = LLM(model=tiny_model, block_size=BLOCK_SIZE, max_num_seqs=4)
    params = SamplingParams(temperature=0, max_tokens=3, ignore_eos=True)
    ids = [[5, 6, 7, 8], [9, 10, 11, 12]]
    expected = [o.token_ids for o in llm.generate(prompt_token_ids=ids, sampling_params=params)]
    assert [o.token_ids for o in llm.generate(prompt_token_ids=torch.tensor(ids[0]), sampling_params=params)] == \
        expected[:1]
    assert [o.token_ids for o in llm.generate(prompt_token_ids=np.array(ids[1]), sampling_params=params)] == \
        expected[1:]
    for batch in ([torch.tensor(p) for p in ids], [np.array(p) for p in ids], torch.tensor(ids), np.array(ids)):
        assert [o.token_ids for o in llm.generate(prompt_token_ids=batch, sampling_params=params)] == expected
    with pytest.raises(ValueError, match="integer token ids"):
        llm.generate(prompt_token_ids=torch.tensor([1.5, 2.0]), sampling_params=params)
