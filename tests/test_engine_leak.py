"""Thousands of mixed requests (finish, stop, abort, preemption, failed steps, rejects) leak nothing."""

from __future__ import annotations

import random
from collections import Counter

import pytest
import torch
from engine_testing import kv_bytes_for
from m1_ascend.kernels import ReferenceBackend

from m1_ascend import BaichuanM1ForCausalLM, preset_config
from m1_ascend.engine import SamplingParams
from m1_ascend.engine.errors import RequestRejected, StepFailed
from m1_ascend.engine.llm_engine import LLMEngine

NUM_REQUESTS = 2000


class FailingBackend(ReferenceBackend):
    """The reference backend, except that every ``period``-th paged attention call raises (a device fault)."""

    def __init__(self, period: int) -> None:
        self.period = period
        self.calls = 0

    def paged_attention(self, *args, **kwargs):
        self.calls += 1
        if self.calls % self.period == 0:
            raise RuntimeError("injected device fault")
        return ReferenceBackend.paged_attention(*args, **kwargs)


def micro_model() -> BaichuanM1ForCausalLM:
    config = preset_config("tiny", vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                           num_attention_heads=2, num_key_value_heads=1, num_swa_attention_heads=2,
                           num_swa_key_value_heads=1, sliding_window=4, max_position_embeddings=40)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return BaichuanM1ForCausalLM(config).eval()


def random_params(rng: random.Random) -> SamplingParams:
    return SamplingParams(
        temperature=rng.choice([0.0, 1.0]), top_k=rng.choice([-1, 5]), max_tokens=rng.randint(1, 3),
        stop_token_ids=rng.sample(range(3, 64), rng.choice([0, 8])), ignore_eos=rng.random() < 0.5,
        seed=rng.choice([None, rng.randint(0, 99)]))


@pytest.mark.timeout(300)
def test_mixed_requests_leave_pools_and_slots_full():
    model = micro_model()
    max_num_seqs = 12
    engine = LLMEngine(model, block_size=2, max_num_seqs=max_num_seqs, max_num_batched_tokens=24,
                       kv_cache_memory=kv_bytes_for(model, 30, max_num_seqs, block_size=2),
                       backend=FailingBackend(period=997))
    manager = engine.block_manager
    rng = random.Random(0)
    shared = [[rng.randrange(3, 64) for _ in range(rng.randint(4, 12))] for _ in range(4)]
    outcomes: Counter[str] = Counter()
    in_flight: list[str] = []
    submitted = rejected = 0
    while submitted < NUM_REQUESTS or engine.has_unfinished_requests():
        for _ in range(rng.randint(0, 4)):
            if submitted == NUM_REQUESTS:
                break
            prefix = rng.choice(shared) if rng.random() < 0.5 else []
            prompt = prefix + [rng.randrange(3, 64) for _ in range(rng.randint(1, 14))]
            if rng.random() < 0.02:
                prompt = prompt * 8  # longer than the 40-token context: rejected, nothing queued
            request_id = f"q{submitted}"
            submitted += 1
            try:
                engine.add_request(request_id, prompt, random_params(rng))
            except RequestRejected:
                rejected += 1
                continue
            in_flight.append(request_id)
        if in_flight and rng.random() < 0.08:
            victim = in_flight.pop(rng.randrange(len(in_flight)))
            engine.abort_request(victim)
            outcomes["abort"] += 1
        try:
            outputs = engine.step()
        except StepFailed as failure:
            outputs = failure.outputs
            outcomes["failed"] += len(outputs)
        for output in outputs:
            if output.finished:
                in_flight.remove(output.request_id)
                outcomes[output.finish_reason] += 1
                outcomes["prefix_hit"] += output.num_cached_tokens > 0
        stats = engine.stats()
        assert stats["conv_slots_used"] == engine.num_running()
        assert stats["global_blocks_used"] >= stats["sliding_blocks_used"]

    assert not in_flight
    # Every path was really taken, so a leak on any of them would show below.
    assert outcomes["stop"] and outcomes["length"] and outcomes["abort"] and outcomes["failed"] and rejected
    assert engine.scheduler.num_preemptions > 0 and outcomes["prefix_hit"]
    assert manager.all_free()
    assert not any(manager.global_pool.ref_counts) and not any(manager.sliding_pool.ref_counts)
    assert engine.stats()["kv_blocks_free"] == engine.stats()["kv_blocks_total"]
