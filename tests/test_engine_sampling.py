"""Sampling and stopping: seeds, top-k/top-p limits, repetition penalty, stop ids, eos and stop strings."""

from __future__ import annotations

import pytest
import torch
from engine_testing import BLOCK_SIZE, random_prompts, run_to_end, tiny_model

from m1_ascend.engine import SamplingParams
from m1_ascend.engine.detokenizer import IncrementalText
from m1_ascend.engine.llm_engine import LLMEngine
from m1_ascend.engine.sampler import apply_repetition_penalty


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def prompts():
    return random_prompts([12, 20, 7, 15], seed=3)


def engine_for(model, **kwargs) -> LLMEngine:
    return LLMEngine(model, block_size=BLOCK_SIZE, max_num_seqs=8, max_num_batched_tokens=64, **kwargs)


def ids(outputs):
    return [o.token_ids for o in outputs]


def greedy(max_tokens: int = 12) -> SamplingParams:
    return SamplingParams(temperature=0, max_tokens=max_tokens, ignore_eos=True)


def test_seeded_sampling_does_not_depend_on_the_batch(model, prompts):
    params = SamplingParams(temperature=1.0, top_p=0.95, max_tokens=12, seed=42, ignore_eos=True)
    alone = ids(run_to_end(engine_for(model), [prompts[0]], params))[0]
    others = [SamplingParams(temperature=1.0, max_tokens=12, seed=s, ignore_eos=True) for s in (1, 2, 3)]
    batched = ids(run_to_end(engine_for(model), prompts, [params, *others]))
    assert batched[0] == alone
    reseeded = ids(run_to_end(engine_for(model), [prompts[0]], SamplingParams(
        temperature=1.0, top_p=0.95, max_tokens=12, seed=43, ignore_eos=True)))[0]
    assert reseeded != alone


def test_limits_that_leave_one_token_equal_greedy(model, prompts):
    engine = engine_for(model)
    expected = ids(run_to_end(engine, prompts, greedy(), prefix="g"))
    top_k = SamplingParams(temperature=1.5, top_k=1, max_tokens=12, seed=0, ignore_eos=True)
    top_p = SamplingParams(temperature=1.5, top_p=1e-6, max_tokens=12, seed=0, ignore_eos=True)
    assert ids(run_to_end(engine, prompts, top_k, prefix="k")) == expected
    assert ids(run_to_end(engine, prompts, top_p, prefix="p")) == expected


def test_temperature_sampling_spreads_over_tokens(model, prompts):
    # Unseeded, high temperature: 8 samples of the same prompt are not all the greedy answer.
    outputs = ids(run_to_end(engine_for(model), [prompts[1]] * 8,
                             SamplingParams(temperature=2.0, max_tokens=6, ignore_eos=True)))
    assert len({tuple(o) for o in outputs}) > 1


def test_repetition_penalty_rule():
    logits = torch.tensor([[2.0, -2.0, 1.0, -1.0], [2.0, -2.0, 1.0, -1.0]])
    out = apply_repetition_penalty(logits.clone(), [[0, 1, 1], [2]], [2.0, 1.0])
    assert out.tolist() == [[1.0, -4.0, 1.0, -1.0], [2.0, -2.0, 1.0, -1.0]]


def test_strong_repetition_penalty_avoids_every_seen_token(model, prompts):
    engine = engine_for(model)
    plain = ids(run_to_end(engine, prompts, greedy(20), prefix="plain"))
    assert any(len(set(o)) < len(o) for o in plain)  # the random model does repeat itself
    penalized = run_to_end(engine, prompts, SamplingParams(temperature=0, repetition_penalty=1e4, max_tokens=20,
                                                           ignore_eos=True), prefix="pen")
    for output in penalized:
        seen = output.prompt_token_ids + output.token_ids
        assert len(set(seen)) == len(seen)


def test_stop_token_ids_and_eos(model, prompts):
    reference = ids(run_to_end(engine_for(model), prompts[:1], greedy()))[0]
    stop = reference[4]
    cut = reference[:reference.index(stop) + 1]
    out = run_to_end(engine_for(model), prompts[:1], SamplingParams(temperature=0, max_tokens=12,
                                                                     stop_token_ids=[stop]))[0]
    assert (out.token_ids, out.finish_reason) == (cut, "stop")
    # Without a tokenizer the config's eos ids end a request, unless ignore_eos.
    eos_model = tiny_model(eos_token_id=stop)
    out = run_to_end(engine_for(eos_model), prompts[:1], SamplingParams(temperature=0, max_tokens=12))[0]
    assert (out.token_ids, out.finish_reason) == (cut, "stop")
    out = run_to_end(engine_for(eos_model), prompts[:1], greedy())[0]
    assert (out.token_ids, out.finish_reason) == (reference, "length")


def test_stop_string_ends_text_before_it(model, prompts, tokenizer):
    full = run_to_end(engine_for(model, tokenizer=tokenizer), prompts[:1], greedy(16))[0]
    assert full.text == tokenizer.decode(full.token_ids)
    stop = full.text[len(full.text) // 2:len(full.text) // 2 + 2]
    out = run_to_end(engine_for(model, tokenizer=tokenizer), prompts[:1],
                     SamplingParams(temperature=0, max_tokens=16, ignore_eos=True, stop=[stop, "never-said"]))[0]
    assert out.finish_reason == "stop"
    assert out.text == full.text[:full.text.index(stop)]
    assert full.token_ids[:len(out.token_ids)] == out.token_ids


def test_streamed_text_never_shows_a_stop_string_start(tokenizer):
    ids_ = tokenizer.encode("the patient has a fever")
    text = IncrementalText(tokenizer, stop=["a fe"])
    shown = []
    for n in range(1, len(ids_) + 1):
        stopped = text.append(ids_[:n])
        shown.append(text.visible(final=stopped))
        if stopped:
            break
    assert stopped and shown[-1] == "the patient has "
    assert all(shown[-1].startswith(s) for s in shown)  # every earlier view is a prefix of the final text
