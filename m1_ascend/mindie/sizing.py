"""The sizing table of the deployment guide, computed with the generator's own choices and memory plan."""

from __future__ import annotations

import copy
from pathlib import Path

from ..config import BaichuanM1Config
from .check import BLOCK_SIZE
from .checkpoint_info import GIB, CheckpointInfo
from .generator import ServiceOptions, choose_layout, service_lengths

CONTEXTS = (8192, 32768)
CARD_COUNTS = (1, 2, 4, 8)


def sizing_table(info: CheckpointInfo, npu_memory_gib: float, memory_fraction: float) -> str:
    """Markdown rows for 8k/32k context on 1/2/4/8 cards, with what an unbounded window would allow."""
    unbounded = copy.deepcopy(info.config)
    unbounded.sliding_window = max(CONTEXTS)
    unbounded_info = CheckpointInfo(info.path, unbounded, info.dtype)
    rows = [
        f"Per card: {npu_memory_gib:g} GiB, NPU_MEMORY_FRACTION {memory_fraction:g}, {info.dtype} weights, "
        f"cacheBlockSize {BLOCK_SIZE}; input = 3/4 of the context, prefill budget = max(input, 8192) tokens.",
        "",
        "| context | cards | layout | weights / card | prefill activations / card | KV per sequence / card "
        "| KV budget / card | concurrent sequences | if the window were not bounded |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for context in CONTEXTS:
        for cards in CARD_COUNTS:
            options = ServiceOptions(model_path=info.path, npus=list(range(cards)), max_seq_len=context)
            tp, _ = choose_layout(info, cards, None)
            _, _, prefill = service_lengths(info, options)
            plan = info.memory_plan(context, tp, prefill, npu_memory_gib, memory_fraction, BLOCK_SIZE)
            naive = unbounded_info.memory_plan(context, tp, prefill, npu_memory_gib, memory_fraction, BLOCK_SIZE)
            instances = cards // tp
            rows.append(
                f"| {context // 1024}k | {cards} | {instances} x TP{tp} | {plan.weight_bytes / GIB:.2f} GiB "
                f"| {plan.prefill_activation_bytes / GIB:.2f} GiB | {plan.kv_cache_bytes_per_sequence / GIB:.3f} GiB "
                f"| {plan.kv_budget_bytes / GIB:.2f} GiB | {plan.max_concurrent_sequences * instances} "
                f"| {naive.max_concurrent_sequences * instances} |")
    return "\n".join(rows)


def preset_info(config: BaichuanM1Config) -> CheckpointInfo:
    """Sizing without weights at hand: the published 14B geometry in bf16."""
    return CheckpointInfo(path=Path("baichuan-m1-14b"), config=config, dtype="bfloat16")
