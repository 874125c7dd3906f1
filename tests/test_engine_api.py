"""The user-facing surface: ``LLM`` on a checkpoint directory, chat, rejections, the CLI commands."""

from __future__ import annotations

import json

import pytest
import torch
from engine_testing import reference_greedy

from m1_ascend import LLM, SamplingParams
from m1_ascend.cli import main
from m1_ascend.config import preset_config
from m1_ascend.engine.errors import RequestRejected
from m1_ascend.engine.memory_plan import analytic_kv_bytes, blocks_for_tokens, sliding_pool_cap

pytest_plugins = ["npu_emulator.fixtures"]

GREEDY = SamplingParams(temperature=0, max_tokens=8, ignore_eos=True)


@pytest.fixture(scope="module")
def llm(tiny_model_dir):
    return LLM(model=tiny_model_dir, block_size=4, max_num_seqs=4, max_num_batched_tokens=32)


def test_generate_text_prompts_matches_plain_model(llm, tiny_model):
    prompts = ["the patient has a fever", "Take the medicine twice a day."]
    outputs = llm.generate(prompts, GREEDY)
    for prompt, output in zip(prompts, outputs, strict=True):
        assert output.prompt_token_ids == llm.tokenizer.encode(prompt)
        assert output.token_ids == reference_greedy(tiny_model, output.prompt_token_ids, GREEDY.max_tokens)
        assert output.text == llm.tokenizer.decode(output.token_ids)
        assert output.finish_reason == "length"
    # One flat id list is one prompt; a list of lists is a batch.
    assert llm.generate(prompt_token_ids=outputs[0].prompt_token_ids, sampling_params=GREEDY)[0].token_ids == \
        outputs[0].token_ids


def test_chat_uses_the_chat_template(llm):
    conversation = [{"role": "system", "content": "You are a doctor."}, {"role": "user", "content": "fever?"}]
    single = llm.chat(conversation, GREEDY)
    assert len(single) == 1
    assert single[0].prompt_token_ids == llm.tokenizer.apply_chat_template(conversation)
    both = llm.chat([conversation, conversation[1:]], GREEDY)
    assert [o.token_ids for o in both][0] == single[0].token_ids and len(both) == 2
    with pytest.raises(ValueError):
        llm.chat([{"role": "doctor", "content": "hi"}])


def test_default_pools_fit_every_sequence_and_only_the_windows(llm):
    stats, config = llm.engine.stats(), llm.engine.config
    assert llm.engine.max_model_len == config.max_position_embeddings == 512
    assert stats["global_blocks_total"] == 4 * blocks_for_tokens(512, 4)  # max_num_seqs full-length sequences
    assert stats["sliding_blocks_total"] == sliding_pool_cap(config, 4, max_num_seqs=4, max_num_batched_tokens=32)
    assert stats["conv_slots_total"] == 4


def test_requests_that_can_never_fit_are_rejected(llm):
    engine = llm.engine
    too_long = [5] * engine.max_model_len
    for prompt, message in ((too_long, "model's context holds"), ([], "empty"), ([5, 10**6], "outside the vocabulary")):
        with pytest.raises(RequestRejected, match=message):
            engine.add_request("bad", prompt, GREEDY)
    with pytest.raises(RequestRejected, match="already in use"):
        engine.add_request("dup", [5], GREEDY)
        engine.add_request("dup", [5], GREEDY)
    engine.abort_request("dup")
    assert not engine.has_unfinished_requests() and engine.block_manager.all_free()


def test_a_small_cache_limits_the_context(tiny_model):
    # 8 blocks of 4 tokens: prompts of 32 tokens can never be held, though the model takes 512.
    from engine_testing import kv_bytes_for

    small = LLM(model=tiny_model, block_size=4, max_num_seqs=2, kv_cache_memory=kv_bytes_for(tiny_model, 8, 2))
    assert small.engine.max_model_len == 32
    with pytest.raises(RequestRejected, match="KV cache holds 32 tokens"):
        small.generate(prompt_token_ids=[5] * 32, sampling_params=GREEDY)
    out = small.generate(prompt_token_ids=[5] * 28, sampling_params=SamplingParams(temperature=0, max_tokens=50))
    assert out[0].finish_reason == "length" and len(out[0].token_ids) == 4  # the context end, not max_tokens


def test_generate_cli_json(tiny_model_dir, tiny_model, capsys):
    code = main(["generate", "--model", str(tiny_model_dir), "--prompt-token-ids", "5,6,7,8,9,10,11,12,13",
                 "--prompt-token-ids", "40,41", "--max-tokens", "5", "--ignore-eos", "--block-size", "4", "--json"])
    assert code == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["prompt_token_ids"] for line in lines] == [list(range(5, 14)), [40, 41]]
    assert lines[0]["token_ids"] == reference_greedy(tiny_model, list(range(5, 14)), 5)
    assert all(line["finish_reason"] == "length" for line in lines)
    assert main(["generate", "--model", str(tiny_model_dir), "--prompt-token-ids", "5,x"]) == 1
    assert "expected comma-separated integers" in capsys.readouterr().err


def test_memory_plan_cli_14b_at_32k(capsys):
    assert main(["memory-plan", "--preset", "baichuan-m1-14b", "--max-seq-len", "32768"]) == 0
    assert "2,023,751,680 B" in capsys.readouterr().out
    assert main(["memory-plan", "--preset", "baichuan-m1-14b", "--max-seq-len", "32768", "--json",
                 "--device-memory", "64GiB"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert analytic_kv_bytes(preset_config("baichuan-m1-14b"), 32768) == 2_013_265_920
    assert 2_013_265_920 <= plan["kv_cache_bytes_per_sequence"] <= 2_013_265_920 * 1.02
    assert plan["max_concurrent_sequences"] >= 1
    with pytest.raises(SystemExit):
        main(["memory-plan", "--preset", "baichuan-m1-14b", "--device-memory", "lots"])
    assert "cannot read the size 'lots'" in capsys.readouterr().err


def test_engine_runs_on_the_emulated_npu_backend(npu_target):
    """The runner's paged metadata drives the NPU backend unchanged (bf16, 128-token blocks)."""
    from conftest import build_tiny_model

    from m1_ascend.engine.llm_engine import LLMEngine

    model = build_tiny_model().to(torch.bfloat16)
    prompts = [list(range(3, 150)), list(range(100, 110))]  # the first spans two blocks, far past the window
    results = []
    for backend in (None, npu_target.backend()):
        engine = LLMEngine(model, device="cpu" if npu_target.emulated else "npu", dtype=torch.bfloat16,
                           max_num_seqs=2, max_num_batched_tokens=64, backend=backend)
        for i, prompt in enumerate(prompts):
            engine.add_request(str(i), prompt, SamplingParams(temperature=0, max_tokens=6, ignore_eos=True))
        done = {}
        while engine.has_unfinished_requests():
            done.update({o.request_id: o.token_ids for o in engine.step() if o.finished})
        results.append([done["0"], done["1"]])
        assert engine.block_manager.all_free()
    assert results[0] == results[1]
    assert "paged_attention" not in backend.fallbacks


def test_an_in_memory_model_is_never_changed_by_an_engine():
    """Issue 15.3: a bf16 engine on a model an fp32 engine already runs must not convert it under that engine."""
    from engine_testing import GREEDY, random_prompts, run_to_end, tiny_model

    from m1_ascend.engine.llm_engine import LLMEngine

    model = tiny_model()
    backend_before = model.kernel_backend
    fp32 = LLMEngine(model, block_size=4)
    bf16 = LLMEngine(model, block_size=4, dtype="bfloat16")
    assert fp32.model is model and bf16.model is not model
    assert {p.dtype for p in model.parameters()} == {torch.float32} and model.kernel_backend is backend_before
    [prompt] = random_prompts([9])
    assert run_to_end(fp32, [prompt], GREEDY)[0].token_ids == reference_greedy(model, prompt, GREEDY.max_tokens)
    assert len(run_to_end(bf16, [prompt], GREEDY)[0].token_ids) == GREEDY.max_tokens
