"""Decode step time, eager vs graph mode, in one run: what ``enforce_eager=False`` buys.

Two models (random weights, fp32, CPU, one torch thread):

- ``host-bound``: the ``tiny`` preset with 40 layers, so compute is near zero and a step costs
  what the host spends launching ~30 torch calls per layer -- the situation of a 910B, whose
  device time per layer is of the order of that host time;
- ``bench``: hidden 1024, 8 layers (the engine benchmark's preset), where matmuls dominate.

For each batch size, two engines serve the same prompts greedily: one eager, one with a decode
graph for exactly that batch size (``decode_graph_sizes``). Once every request is decoding, their
steps alternate (machine noise hits both alike) and the median step times are compared; the
warm-up (compile) time of the graph engine is reported, and the greedy tokens of the two engines
must be identical. Prints a table and the ratios; ``--json`` writes the numbers.
Run ``python benchmarks/bench_decode_graphs.py`` (compiling costs tens of seconds per engine, less
when torch's compile cache is warm).
"""

from __future__ import annotations

import argparse
import json
import statistics
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


def engine_for(model: BaichuanM1ForCausalLM, batch: int, eager: bool) -> tuple[LLMEngine, float]:
    """An engine serving ``batch`` greedy requests, and its start-up (warm-up) seconds."""
    start = time.perf_counter()
    engine = LLMEngine(model, max_num_seqs=batch, enable_prefix_caching=False, enforce_eager=eager,
                       decode_graph_sizes=None if eager else [batch])
    return engine, time.perf_counter() - start


def run(model: BaichuanM1ForCausalLM, batch: int, steps: int) -> dict[str, float | bool]:
    """Eager and graph engines decode the same requests, their steps interleaved (so machine noise hits both);
    median step times, warm-up, and whether their greedy tokens are identical."""
    engines = {"eager": engine_for(model, batch, True)[0]}
    engines["graph"], warm_up = engine_for(model, batch, False)
    gen = torch.Generator().manual_seed(batch)
    prompts = [torch.randint(3, model.config.vocab_size, (32,), generator=gen).tolist() for _ in range(batch)]
    params = SamplingParams(temperature=0, max_tokens=steps + 2, ignore_eos=True)
    finished: dict[str, dict[str, list[int]]] = {name: {} for name in engines}
    times: dict[str, list[float]] = {name: [] for name in engines}

    def step(name: str) -> None:
        start = time.perf_counter()
        outputs = engines[name].step()
        times[name].append(time.perf_counter() - start)
        finished[name].update({out.request_id: out.token_ids for out in outputs if out.finished})

    for name, engine in engines.items():
        for i, prompt in enumerate(prompts):
            engine.add_request(str(i), prompt, params)
        while any(s.num_uncomputed_tokens > 1 for s in engine.scheduler.running) or engine.scheduler.waiting:
            step(name)
        step(name)  # every request has its first token: from here on, pure decode steps
        times[name].clear()
    for _ in range(steps):
        for name in engines:
            step(name)
    for name, engine in engines.items():
        while engine.has_unfinished_requests():
            step(name)
    eager_ms, graph_ms = (statistics.median(times[name][:steps]) * 1e3 for name in engines)
    same = [finished["eager"][str(i)] for i in range(batch)] == [finished["graph"][str(i)] for i in range(batch)]
    return {"eager_ms": eager_ms, "graph_ms": graph_ms, "speedup": eager_ms / graph_ms, "warm_up_s": warm_up,
            "identical_tokens": same}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--steps", type=int, default=40, help="decode steps timed per engine (default 40)")
    parser.add_argument("--json", help="write the numbers to this file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    print(f"{'model':10s} {'batch':>5s} {'eager ms':>9s} {'graph ms':>9s} {'speed-up':>8s} {'warm-up s':>9s} tokens")
    for name in args.models:
        model = build(name)
        for batch in args.batches:
            row = {"model": name, "batch": batch, **run(model, batch, args.steps)}
            rows.append(row)
            print(f"{name:10s} {batch:5d} {row['eager_ms']:9.2f} {row['graph_ms']:9.2f} {row['speedup']:7.2f}x "
                  f"{row['warm_up_s']:9.1f} {'identical' if row['identical_tokens'] else 'DIFFERENT'}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
