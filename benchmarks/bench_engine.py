"""Engine vs. transformers ``generate``: aggregate decode throughput, and KV memory after a long prefill.

Both sides run the same model object (the ``bench`` preset: hidden 1024, 8 layers, odd layers
sliding-window, random weights, fp32 on CPU) in the same process, greedy, ignoring EOS:

- engine: ``LLMEngine`` with C requests submitted at once (continuous batching, paged cache);
  decode throughput counts the tokens generated after every request has its first token,
  over the time that took;
- transformers, one request at a time: ``model.generate`` per prompt, the usual way;
- transformers, padded static batches: ``model.generate`` on the C prompts left-padded to one batch.
  For transformers, decode time is ``t(new_tokens) - t(1 token)``, so prefill is excluded too.

Every measurement is repeated (``--repeats``, engine and transformers alternating) and the best
run is kept, which damps the noise of a shared machine. Run ``python benchmarks/bench_engine.py``
(tens of minutes on 2 shared cores) or ``--quick`` (a few minutes). Prints the throughput table
and the ratios, saves a PNG plot, and optionally the raw numbers as JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from m1_ascend import BaichuanM1ForCausalLM, preset_config
from m1_ascend.engine import SamplingParams
from m1_ascend.engine.llm_engine import LLMEngine
from m1_ascend.engine.memory_plan import analytic_kv_bytes, geometry_layers, global_block_bytes, sliding_block_bytes

CONCURRENCY = [1, 4, 16, 64]


def build_model(seed: int = 0) -> BaichuanM1ForCausalLM:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BaichuanM1ForCausalLM(preset_config("bench")).eval()
    model.generation_config.eos_token_id = None  # decode the full length on both sides
    model.generation_config.pad_token_id = 0
    return model


def make_prompts(count: int, mean_len: int, vocab: int, seed: int = 1) -> list[list[int]]:
    """Prompt lengths spread over [0.75, 1.25] x mean, so static batches really need padding."""
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(mean_len * 3 // 4, mean_len * 5 // 4 + 1, (count,), generator=gen)
    return [torch.randint(3, vocab, (int(n),), generator=gen).tolist() for n in lengths]


def engine_decode(model: BaichuanM1ForCausalLM, prompts: list[list[int]], new_tokens: int,
                  graphs: bool = False) -> tuple[float, list[int]]:
    """(decode tokens/s with all requests in flight, token ids of the first request); ``graphs``: decode steps
    as a compiled graph of exactly this batch (compiled before the clock starts)."""
    batch = max(len(prompts), 1)
    engine = LLMEngine(model, max_num_seqs=batch, max_num_batched_tokens=2048, enable_prefix_caching=False,
                       enforce_eager=not graphs, decode_graph_sizes=[batch] if graphs else None)
    params = SamplingParams(temperature=0, max_tokens=new_tokens, ignore_eos=True)
    for i, prompt in enumerate(prompts):
        engine.add_request(str(i), prompt, params)
    produced: dict[str, int] = {}
    first_ids: list[int] = []
    start = start_tokens = None
    while engine.has_unfinished_requests():
        for output in engine.step():
            produced[output.request_id] = len(output.token_ids)
            if output.request_id == "0":
                first_ids = output.token_ids
        if start is None and len(produced) == len(prompts):
            start, start_tokens = time.perf_counter(), sum(produced.values())
    assert start is not None and start_tokens is not None
    return (sum(produced.values()) - start_tokens) / (time.perf_counter() - start), first_ids


@torch.inference_mode()
def hf_generate_seconds(model: BaichuanM1ForCausalLM, prompts: list[list[int]], new_tokens: int) -> tuple[float, list[int]]:
    """Wall time of one ``generate`` call on the left-padded batch, and the first row's new tokens."""
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    start = time.perf_counter()
    out = model.generate(ids, attention_mask=mask, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                         do_sample=False)
    return time.perf_counter() - start, out[0, width:].tolist()


def hf_decode(model: BaichuanM1ForCausalLM, prompts: list[list[int]], new_tokens: int) -> tuple[float, list[int]]:
    """Decode tokens/s of one static batch: (t(new_tokens) - t(1)) excludes the prefill."""
    first, _ = hf_generate_seconds(model, prompts, 1)
    total, ids = hf_generate_seconds(model, prompts, new_tokens)
    return len(prompts) * (new_tokens - 1) / (total - first), ids


def kv_after_prefill(model: BaichuanM1ForCausalLM, prompt_len: int, chunk: int) -> dict[str, float]:
    """KV bytes one sequence holds right after a long prefill, and the peak during it, vs. the minimum."""
    config = model.config
    dtype_bytes = next(model.parameters()).element_size()
    engine = LLMEngine(model, max_num_seqs=1, max_num_batched_tokens=chunk, enable_prefix_caching=False)
    prompt = torch.randint(3, config.vocab_size, (prompt_len,), generator=torch.Generator().manual_seed(5)).tolist()
    engine.add_request("long", prompt, SamplingParams(temperature=0, max_tokens=2, ignore_eos=True))
    seq = engine.scheduler.waiting[0]
    while not engine.step():  # until the prefill has produced its first token
        pass
    g = global_block_bytes(config, 128, dtype_bytes, conv_snapshots=False)
    s = sliding_block_bytes(config, 128, dtype_bytes)
    held = len(seq.global_blocks) * g + sum(b is not None for b in seq.sliding_blocks) * s
    stats = engine.stats()
    peak = stats["global_blocks_peak"] * g + stats["sliding_blocks_peak"] * s
    minimum = analytic_kv_bytes(config, prompt_len, dtype_bytes)
    per_token = sum(2 * config.layer_heads(i)[1] * config.layer_heads(i)[2] * dtype_bytes
                    for i in range(config.num_hidden_layers))
    untrimmed = per_token * prompt_len  # what the official code holds after a prefill: every token, every layer
    engine.abort_request("long")
    return {"prompt_len": prompt_len, "chunk": chunk, "held_bytes": held, "peak_bytes": peak,
            "analytic_min_bytes": minimum, "untrimmed_bytes": untrimmed}


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conc = results["concurrency"]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.plot(conc, results["engine_tok_s"], "o-", label="m1-ascend engine (continuous batching)")
    if results["engine_graph_tok_s"]:
        ax.plot(conc, results["engine_graph_tok_s"], "^-", label="m1-ascend engine, graph-mode decode")
    ax.plot(conc, results["hf_static_tok_s"], "s--", label="transformers generate, padded static batch")
    ax.plot(conc, [results["hf_single_tok_s"]] * len(conc), ":", label="transformers generate, one at a time")
    ax.set_xscale("log", base=2)
    ax.set_xticks(conc, [str(c) for c in conc])
    ax.set_xlabel("concurrent requests")
    ax.set_ylabel("aggregate decode tokens/s")
    ax.set_title(f"bench preset (hidden 1024, 8 layers), {results['threads']} CPU threads")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short prompts and outputs (about a minute)")
    parser.add_argument("--prompt-len", type=int, help="mean prompt length (default 128, quick 32)")
    parser.add_argument("--new-tokens", type=int, help="tokens generated per request (default 64, quick 16)")
    parser.add_argument("--repeats", type=int, help="runs per measurement, best kept (default 2, quick 1)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    parser.add_argument("--plot", type=Path, default=Path("docs/bench_engine.png"), help="PNG output")
    parser.add_argument("--json", type=Path, help="also write the raw numbers here")
    parser.add_argument("--graphs", action="store_true",
                        help="also run the engine with graph-mode decode (compiles one graph per concurrency)")
    args = parser.parse_args()
    prompt_len = args.prompt_len or (32 if args.quick else 128)
    new_tokens = args.new_tokens or (16 if args.quick else 64)
    repeats = args.repeats or (1 if args.quick else 2)
    torch.set_num_threads(args.threads)
    model = build_model()
    prompts = make_prompts(max(CONCURRENCY), prompt_len, model.config.vocab_size)
    print(f"bench preset, fp32, {args.threads} threads; prompts ~{prompt_len} tokens, {new_tokens} new tokens each, "
          f"best of {repeats}")

    engine_decode(model, prompts[:2], 4)  # warm-up both paths
    hf_generate_seconds(model, prompts[:1], 4)
    singles = [hf_decode(model, prompts[:1], new_tokens) for _ in range(repeats)]
    hf_single = max(s for s, _ in singles)
    results: dict = {"concurrency": CONCURRENCY, "threads": args.threads, "prompt_len": prompt_len,
                     "new_tokens": new_tokens, "repeats": repeats, "hf_single_tok_s": hf_single, "engine_tok_s": [],
                     "hf_static_tok_s": [], "engine_graph_tok_s": []}
    print(f"\n{'concurrent':>10} {'engine tok/s':>13} {'HF static tok/s':>16} {'HF 1-at-a-time':>15} "
          f"{'engine/HF single':>17} {'engine/HF static':>17}" + (f" {'graph tok/s':>12} {'graph/HF static':>16}"
                                                                    if args.graphs else ""))
    same_tokens = True
    for c in CONCURRENCY:
        runs = [(engine_decode(model, prompts[:c], new_tokens), hf_decode(model, prompts[:c], new_tokens))
                for _ in range(repeats)]
        engine_tps, engine_ids = max(e for e, _ in runs)
        static_tps, static_ids = max(h for _, h in runs)
        same_tokens &= engine_ids == singles[0][1] == static_ids
        results["engine_tok_s"].append(engine_tps)
        results["hf_static_tok_s"].append(static_tps)
        line = (f"{c:>10} {engine_tps:>13.1f} {static_tps:>16.1f} {hf_single:>15.1f} "
                f"{engine_tps / hf_single:>16.2f}x {engine_tps / static_tps:>16.2f}x")
        if args.graphs:
            graph_tps, graph_ids = max(engine_decode(model, prompts[:c], new_tokens, graphs=True) for _ in range(repeats))
            same_tokens &= graph_ids == engine_ids
            results["engine_graph_tok_s"].append(graph_tps)
            line += f" {graph_tps:>12.1f} {graph_tps / static_tps:>15.2f}x"
        print(line, flush=True)
    results["greedy_tokens_identical"] = same_tokens
    print(f"greedy tokens of request 0 identical across engine / HF single / HF static (/ graphs): {same_tokens}")

    window = model.config.sliding_window
    kv_len = 2 * window if args.quick else 8 * window
    results["kv"] = [kv_after_prefill(model, kv_len, chunk) for chunk in (kv_len, window)]
    global_layers, sliding_layers = geometry_layers(model.config)
    print(f"\nKV cache of one {kv_len}-token prompt (window {window}, {len(global_layers)} global + "
          f"{len(sliding_layers)} sliding layers, block 128, fp32):")
    for row in results["kv"]:
        print(f"  prefill chunk {row['chunk']:>5}: held after prefill {row['held_bytes'] / 2**20:8.2f} MiB "
              f"({row['held_bytes'] / row['analytic_min_bytes']:.3f}x the analytic minimum "
              f"{row['analytic_min_bytes'] / 2**20:.2f} MiB); peak during prefill {row['peak_bytes'] / 2**20:.2f} MiB "
              f"({row['peak_bytes'] / row['analytic_min_bytes']:.3f}x); untrimmed (official code) "
              f"{row['untrimmed_bytes'] / 2**20:.2f} MiB")
    args.plot.parent.mkdir(parents=True, exist_ok=True)
    plot(results, args.plot)
    print(f"\nplot saved to {args.plot}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
