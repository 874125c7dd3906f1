"""``m1-ascend memory-plan``: KV cache bytes per sequence and how many sequences fit on a card."""

from __future__ import annotations

import argparse
import json
import re

from ..engine.loader import DTYPES

UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
         "t": 10**12, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_size(text: str) -> int:
    """``64GiB``, ``64GB``, ``1.5TiB`` or plain bytes."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", text)
    if not match or match.group(2).lower() not in UNITS:
        raise argparse.ArgumentTypeError(f"cannot read the size {text!r}; write e.g. 64GiB, 64GB or 68719476736")
    return int(float(match.group(1)) * UNITS[match.group(2).lower()])


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "memory-plan", help="KV cache bytes per sequence and sequences per card",
        description="What the engine's paged KV cache allocates for one sequence of --max-seq-len tokens (global "
                    "layers keep every block, sliding-window layers only the window) and, with --device-memory, "
                    "how many such sequences fit on a card beside the weights.")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--preset", help="a built-in geometry, e.g. baichuan-m1-14b")
    source.add_argument("--model", metavar="DIR", help="a checkpoint directory (reads config.json only)")
    parser.add_argument("--max-seq-len", type=int, help="tokens per sequence, prompt + output (default: the "
                                                        "model's maximum)")
    parser.add_argument("--block-size", type=int, default=128, help="KV cache block size in tokens (default 128)")
    parser.add_argument("--dtype", default="bfloat16", choices=sorted(DTYPES), help="cache dtype (default bf16)")
    parser.add_argument("--device-memory", type=parse_size, metavar="SIZE", help="memory of one card, e.g. 64GiB")
    parser.add_argument("--tp", type=int, default=1, metavar="N", help="tensor-parallel cards (default 1)")
    parser.add_argument("--prefill-tokens", type=int, default=2048, metavar="N",
                        help="activation reserve for a prefill of N tokens (default 2048, the engine's "
                             "max_num_batched_tokens)")
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..engine.memory_plan import plan_memory

    if args.preset:
        from ..config import preset_config

        config = preset_config(args.preset)
    else:
        from ..checkpoint import load_config

        config = load_config(args.model)
    seq_len = args.max_seq_len or config.max_position_embeddings
    if seq_len < 1 or args.block_size < 1:
        raise ValueError("--max-seq-len and --block-size must be positive")
    plan = plan_memory(config, seq_len, block_size=args.block_size, dtype_bytes=DTYPES[args.dtype].itemsize,
                       device_memory_bytes=args.device_memory, tensor_parallel=args.tp,
                       prefill_tokens=args.prefill_tokens)
    if args.json:
        print(json.dumps(plan.to_dict(), indent=2))
        return 0
    gib = 2**30
    print(f"KV cache per sequence of {seq_len} tokens: {plan.kv_cache_bytes_per_sequence:,} B "
          f"({plan.kv_cache_bytes_per_sequence / gib:.3f} GiB; analytic minimum {plan.analytic_kv_bytes_per_sequence:,} B, "
          f"+{plan.kv_cache_bytes_per_sequence / plan.analytic_kv_bytes_per_sequence - 1:.2%} block rounding)")
    print(f"  blocks of {plan.block_size}: {plan.global_blocks_per_sequence} per global layer, "
          f"{plan.sliding_blocks_per_sequence} per sliding-window layer; conv state {plan.conv_state_bytes_per_sequence:,} B")
    print(f"weights per card: {plan.weight_bytes:,} B ({plan.weight_bytes / gib:.2f} GiB)")
    if plan.max_concurrent_sequences is not None:
        print(f"KV budget per card: {plan.kv_budget_bytes:,} B -> max_concurrent_sequences: {plan.max_concurrent_sequences}")
    return 0
