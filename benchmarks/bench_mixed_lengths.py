"""Mixed lengths: does a step cost what its sequences attend to, or what the longest one forces on all?

On the ``demo`` preset (random weights, fp32, CPU; window 256, context 4096) the engine runs:

- ``short``: 32 requests decoding (prompts of ~32 tokens), decode step time;
- ``long``: one request decoding after a 3,500-token prompt, decode step time;
- ``mixed``: both together: the target is ``mixed ~ short + long`` (ratio ~1);
- ``prefill``: one 3,000-token prompt prefilled in a single chunk beside 16 decoding requests:
  the step time and the peak memory it adds (resident set, measured in a fresh process).

Each scenario runs in its own process so peak memory is not shared between them. Prints one
table; ``--json`` writes the numbers. Run ``python benchmarks/bench_mixed_lengths.py``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch

SCENARIOS = ("short", "long", "mixed", "prefill")
LONG_PROMPT, PREFILL_PROMPT, SHORT_PROMPT = 3500, 3000, 32


def _engine(max_num_seqs: int):
    from m1_ascend import BaichuanM1ForCausalLM, preset_config
    from m1_ascend.engine.llm_engine import LLMEngine

    torch.manual_seed(0)
    model = BaichuanM1ForCausalLM(preset_config("demo")).eval()
    return LLMEngine(model, max_num_seqs=max_num_seqs, max_num_batched_tokens=4096, enable_prefix_caching=False)


def _add(engine, name: str, prompt_len: int, count: int, max_tokens: int = 10_000) -> None:
    from m1_ascend.engine import SamplingParams

    params = SamplingParams(temperature=0, max_tokens=max_tokens, ignore_eos=True)
    gen = torch.Generator().manual_seed(len(name) + prompt_len)
    for i in range(count):
        engine.add_request(f"{name}-{i}", torch.randint(3, 2000, (prompt_len,), generator=gen).tolist(), params)


def _until_decoding(engine) -> None:
    while any(s.num_uncomputed_tokens > 1 for s in engine.scheduler.running) or engine.scheduler.waiting:
        engine.step()


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_scenario(name: str, steps: int) -> dict[str, float]:
    torch.set_num_threads(1)
    engine = _engine(max_num_seqs=64)
    if name in ("short", "mixed"):
        _add(engine, "short", SHORT_PROMPT, 32)
    if name in ("long", "mixed"):
        _add(engine, "long", LONG_PROMPT, 1)
    if name == "prefill":
        _add(engine, "short", SHORT_PROMPT, 16)
        _until_decoding(engine)
        engine.step()
        before = _rss_mib()
        _add(engine, "prefill", PREFILL_PROMPT, 1)
        start = time.perf_counter()
        engine.step()  # the whole prompt in one chunk, beside the 16 decoding requests
        return {"step_ms": (time.perf_counter() - start) * 1e3, "peak_added_mib": _rss_mib() - before}
    _until_decoding(engine)
    engine.step()  # warm
    start = time.perf_counter()
    for _ in range(steps):
        engine.step()
    return {"step_ms": (time.perf_counter() - start) * 1e3 / steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="decode steps timed per scenario (default 10)")
    parser.add_argument("--json", help="write the numbers to this file")
    parser.add_argument("--scenario", choices=SCENARIOS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.scenario:
        print(json.dumps(run_scenario(args.scenario, args.steps)))
        return
    results = {}
    for name in SCENARIOS:
        out = subprocess.run([sys.executable, __file__, "--scenario", name, "--steps", str(args.steps)],
                             capture_output=True, text=True, check=True).stdout
        results[name] = json.loads(out.strip().splitlines()[-1])
        print(f"{name:8s} " + "  ".join(f"{k} {v:8.1f}" for k, v in results[name].items()), flush=True)
    ratio = results["mixed"]["step_ms"] / (results["short"]["step_ms"] + results["long"]["step_ms"])
    print(f"mixed / (short + long) = {ratio:.2f}  (1.0: a step costs the sum of what its sequences attend to)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({**results, "mixed_over_sum": ratio}, f, indent=2)


if __name__ == "__main__":
    main()
