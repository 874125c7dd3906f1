"""Graph-mode decode: the same greedy tokens as eager, no recompilation after warm-up, stale host values caught.

CPU: ``torch.compile(fullgraph=True, dynamic=False)`` per bucket, run with its guards evaluated under
``torch.compiler.set_stance("fail_on_recompile")`` through a whole generation in which requests join
and finish inside a bucket, the KV cache is too small (preemption), prompts are longer than the
window and prefix caching snapshots the conv state. NPU: ACL graphs captured on the torch_npu
emulator, whose replay re-runs the captured kernels with the captured host values except those
refreshed through ``update`` -- a decode step that forgot one would give wrong tokens here.
"""

from __future__ import annotations

import copy

import pytest
import torch
from engine_testing import BLOCK_SIZE, assert_greedy_up_to_ties, kv_bytes_for, random_prompts, tiny_model

from m1_ascend.config import preset_config
from m1_ascend.engine import SamplingParams, llm_engine
from m1_ascend.engine.decode_graph import DecodeGraphs, bucket_sizes
from m1_ascend.engine.llm_engine import LLMEngine
from m1_ascend.modeling import BaichuanM1ForCausalLM

pytest_plugins = ["npu_emulator.fixtures"]


def serve(engine: LLMEngine, prompts: list[list[int]], max_tokens: list[int], arrivals: list[int]) -> list[list[int]]:
    """Requests join at their arrival step and leave at their length; returns each one's tokens."""
    done: dict[int, list[int]] = {}
    step = 0
    while len(done) < len(prompts):
        for i, arrival in enumerate(arrivals):
            if arrival == step:
                engine.add_request(str(i), prompts[i], SamplingParams(temperature=0, max_tokens=max_tokens[i],
                                                                      ignore_eos=True))
        done.update({int(out.request_id): out.token_ids for out in engine.step() if out.finished})
        step += 1
    return [done[i] for i in range(len(prompts))]


def graph_steps(engine: LLMEngine) -> int:
    graphs = engine.runner.graphs
    assert graphs is not None
    return sum(graphs.runs.values())


def test_bucket_sizes_follow_mindie_and_vllm():
    assert bucket_sizes(1) == [1] and bucket_sizes(3) == [1, 2, 3] and bucket_sizes(20) == [1, 2, 4, 8, 16, 20]
    assert bucket_sizes(64)[-3:] == [48, 56, 64]


def test_compiled_decode_equals_eager_without_recompiling():
    model = tiny_model()
    prompts = random_prompts([3, 12, 21, 7, 30, 16])  # past the window of 8; blocks of 4 tokens
    max_tokens, arrivals = [14, 6, 9, 11, 5, 8], [0, 0, 2, 5, 5, 9]
    memory = kv_bytes_for(model, 14, max_num_seqs=4)  # too few blocks for 4 long sequences: preemption
    options = dict(block_size=BLOCK_SIZE, max_num_seqs=4, max_num_batched_tokens=16, kv_cache_memory=memory)
    eager = LLMEngine(model, enforce_eager=True, **options)
    want = serve(eager, prompts, max_tokens, arrivals)
    graph = LLMEngine(model, enforce_eager=False, **options)
    assert sorted(graph.runner.graphs.buckets) == [1, 2, 4]
    graph.runner.graphs.skip_guards = False  # every step's guards evaluated: they hold, nothing recompiles
    assert serve(graph, prompts, max_tokens, arrivals) == want
    graph.runner.graphs.skip_guards = True  # as served: guards skipped after warm-up
    got = serve(graph, prompts, max_tokens, arrivals)
    assert got == want
    assert graph.scheduler.num_preemptions > 0 and graph_steps(graph) > 10
    assert set(graph.runner.graphs.runs) >= {2, 4}  # batches of 3 padded to 4, and smaller ones
    assert graph.block_manager.all_free()


@pytest.mark.slow_e2e  # ten compiles
def test_more_buckets_than_dynamos_per_function_limit_and_guards_that_really_check():
    """``max_num_seqs=64`` means 11 buckets: each its own compile region (dynamo allows 8 per function), and
    with guards evaluated a changed input is refused rather than silently recompiled."""
    model = tiny_model(num_hidden_layers=1)
    sizes = list(range(1, 11))
    engine = LLMEngine(model, block_size=BLOCK_SIZE, max_num_seqs=10, enforce_eager=False, decode_graph_sizes=sizes)
    graphs = engine.runner.graphs
    assert sorted(graphs.buckets) == sizes
    prompts, max_tokens, arrivals = random_prompts([5] * 10), list(range(2, 12)), [0] * 10  # batches 10, 9, ..., 1
    want = serve(LLMEngine(model, block_size=BLOCK_SIZE, max_num_seqs=10, enforce_eager=True), prompts, max_tokens,
                 arrivals)
    assert serve(engine, prompts, max_tokens, arrivals) == want and set(graphs.runs) == set(sizes)
    graphs.skip_guards = False
    bucket = graphs.buckets[1]
    bucket.global_meta.block_tables = bucket.global_meta.block_tables[:, :1].clone()  # a shape the graph was not made for
    engine.add_request("r", prompts[0], SamplingParams(temperature=0, max_tokens=3, ignore_eos=True))
    engine.step()
    with pytest.raises(Exception, match="fail_on_recompile|recompil"):
        engine.step()


def m1_shaped(seed: int = 0) -> BaichuanM1ForCausalLM:
    """Baichuan-M1's head dims (global 256, sliding 128: FIA TND) at a CPU-friendly width, bf16."""
    config = preset_config("tiny", hidden_size=512, intermediate_size=512, num_hidden_layers=2, num_attention_heads=2,
                           num_key_value_heads=1, num_swa_attention_heads=4, num_swa_key_value_heads=2,
                           sliding_window=160, max_position_embeddings=1024, initializer_range=0.1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return BaichuanM1ForCausalLM(config).eval().to(torch.bfloat16)


@pytest.fixture
def npu_graph_engine(npu_target):
    def build(model: BaichuanM1ForCausalLM, **options: object) -> LLMEngine:
        device = "cpu" if npu_target.emulated else "npu"
        return LLMEngine(model=model, device=device, backend=npu_target.backend(), block_size=128, max_num_seqs=4,
                         enforce_eager=False, dtype=torch.bfloat16, **options)

    return build


def test_acl_graph_decode_equals_the_reference(npu_graph_engine):
    """Captured decode steps, replayed with per-layer KV lengths, over windows that slide past blocks."""
    model = m1_shaped()
    engine = npu_graph_engine(copy.deepcopy(model))
    graphs = engine.runner.graphs
    assert sorted(graphs.buckets) == [1, 2, 4]
    prompts = random_prompts([150, 60, 230, 95, 170])  # 230 + 40 tokens: the window passes a block boundary
    max_tokens, arrivals = [40, 12, 40, 20, 9], [0, 0, 1, 14, 14]
    outputs = serve(engine, prompts, max_tokens, arrivals)
    for prompt, tokens in zip(prompts, outputs, strict=True):
        assert_greedy_up_to_ties(model, prompt, tokens)
    assert graph_steps(engine) > 20 and set(graphs.runs) >= {2, 4}  # 3 running requests pad to 4
    assert engine.block_manager.all_free()


@pytest.mark.npu_emulated
def test_a_step_that_does_not_refresh_the_lengths_is_caught(torch_npu_emulator, monkeypatch):
    """The emulator's replay keeps captured host values: without update() the step cannot pass for right."""
    from m1_ascend.kernels.npu import NpuBackend

    engine = LLMEngine(model=m1_shaped(), device="cpu", backend=NpuBackend(device="cpu"), block_size=128,
                       max_num_seqs=2, enforce_eager=False, dtype=torch.bfloat16)
    monkeypatch.setattr(DecodeGraphs, "_refresh", lambda self, bucket, lengths: None)
    engine.add_request("r", random_prompts([20])[0], SamplingParams(temperature=0, max_tokens=4, ignore_eos=True))
    engine.step()  # prefill, eager
    engine.step()  # first replay: waits for an update that never comes
    with pytest.raises(Exception, match="would hang"):
        engine.step()


@pytest.mark.npu_emulated
def test_a_step_the_npu_cannot_capture_runs_eagerly_by_default_and_is_refused_on_demand(torch_npu_emulator, monkeypatch,
                                                                                        caplog):
    """Sliding layers kept off TND (M1_ASCEND_FIA_TND=0) decode in BSND with a host-built window bias."""
    from m1_ascend.kernels.npu import NpuBackend

    def build(enforce_eager: bool | None) -> LLMEngine:
        return LLMEngine(model=m1_shaped(), device="cpu", backend=NpuBackend(device="cpu", allow_tnd=False),
                         block_size=128, max_num_seqs=2, enforce_eager=enforce_eager, dtype=torch.bfloat16)

    with pytest.raises(ValueError, match="layer 1: sliding-window attention would decode in BSND.*M1_ASCEND_FIA_TND=0"):
        build(False)
    monkeypatch.setitem(llm_engine.EAGER_BY_DEFAULT, "cpu", False)  # the emulated NPU's default: graphs
    with caplog.at_level("WARNING"):
        engine = build(None)
    assert engine.enforce_eager and engine.runner.graphs is None and "decode graphs off" in caplog.text
