"""Decode step time, eager vs graph mode, in one run: what ``enforce_eager=False`` buys.

Two models (random weights, fp32, CPU, one torch thread):

- ``host-bound``: the ``tiny`` preset with 40 layers, so compute is near zero and a step costs
  what the host spends launching ~30 torch calls per layer -- the situation of a 910B, whose
  device time per layer is of the order of that host time;
- ``bench``: hidden 1024, 8 layers (the engine benchmark's preset), where matmuls dominate.

For each batch size, two engines serve the same prompts greedily: one eager, one with a decode
graph for exactly that batch size (``decode_graph_sizes``). A step is timed once every request is
decoding; the warm-up (compile) time of the graph engine is reported, and the greedy tokens of the
two engines must be identical. Prints a table and the ratios; ``--json`` writes the numbers.
Run ``python benchmarks/bench_decode_graphs.py`` (compiling costs tens of seconds per engine, less
when torch's compile cache is warm).
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from m1_ascend import BaichuanM1ForCausalLM, preset_config
from m1_ascend.engine import SamplingParams
from m1_ascend.engine.llm_engine import LLMEngine

MODELS = {"host-bound": ("tiny", {"num_hidden_layers": 40, "max_position_embeddings": 2048}), "bench": ("bench", {})}


def build(name: str) -> BaichuanM1ForCausalLM:
    preset, overrides = MODELS[name]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return BaichuanM1ForCausalLM(preset_config(preset, **overrides)).eval()


def run(model: BaichuanM1ForCausalLM, batch: int, eager: bool, steps: int) -> tuple[float, float, list[list[int]]]:
    """(warm-up seconds, ms per decode step, the tokens each request generated)."""
    start = time.perf_counter()
    engine = LLMEngine(model, max_num_seqs=batch, enable_prefix_caching=False, enforce_eager=eager,
                       decode_graph_sizes=None if eager else [batch])
    warm_up = time.perf_counter() - start
    gen = torch.Generator().manual_seed(batch)
    params = SamplingParams(temperature=0, max_tokens=steps + 2, ignore_eos=True)
    for i in range(batch):
        engine.add_request(str(i), torch.randint(3, model.config.vocab_size, (32,), generator=gen).tolist(), params)
    finished: dict[str, list[int]] = {}

    def step() -> None:
        finished.update({out.request_id: out.token_ids for out in engine.step() if out.finished})

    while any(s.num_uncomputed_tokens > 1 for s in engine.scheduler.running) or engine.scheduler.waiting:
        step()
    step()  # every request has its first token: from here on, pure decode steps
    start = time.perf_counter()
    for _ in range(steps):
        step()
    step_ms = (time.perf_counter() - start) * 1e3 / steps
    while engine.has_unfinished_requests():
        step()
    return warm_up, step_ms, [finished[str(i)] for i in range(batch)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--steps", type=int, default=20, help="decode steps timed (default 20)")
    parser.add_argument("--json", help="write the numbers to this file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    print(f"{'model':10s} {'batch':>5s} {'eager ms':>9s} {'graph ms':>9s} {'speed-up':>8s} {'warm-up s':>9s} tokens")
    for name in args.models:
        model = build(name)
        for batch in args.batches:
            _, eager_ms, eager_tokens = run(model, batch, True, args.steps)
            warm_up, graph_ms, graph_tokens = run(model, batch, False, args.steps)
            same = eager_tokens == graph_tokens
            rows.append({"model": name, "batch": batch, "eager_ms": eager_ms, "graph_ms": graph_ms,
                         "speedup": eager_ms / graph_ms, "warm_up_s": warm_up, "identical_tokens": same})
            print(f"{name:10s} {batch:5d} {eager_ms:9.2f} {graph_ms:9.2f} {eager_ms / graph_ms:7.2f}x {warm_up:9.1f} "
                  f"{'identical' if same else 'DIFFERENT'}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
