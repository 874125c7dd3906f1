"""What the paged KV cache really allocates per sequence, and how many sequences fit.

The two head geometries are planned separately: global layers keep every block of a
sequence; sliding-window layers keep only the blocks that overlap the last ``window`` tokens
(an unaligned window of W tokens touches at most ``ceil((W - 1) / block_size) + 1`` blocks).
The block manager sizes its pools with these same functions, so the plan is what runs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from ..config import BaichuanM1Config


def blocks_for_tokens(num_tokens: int, block_size: int) -> int:
    return math.ceil(num_tokens / block_size)


def window_blocks(window: int, block_size: int) -> int:
    """Most blocks an unaligned run of ``window`` consecutive tokens can touch."""
    return math.ceil((window - 1) / block_size) + 1


def sliding_blocks_per_sequence(config: BaichuanM1Config, seq_len: int, block_size: int) -> int:
    return min(blocks_for_tokens(seq_len, block_size), window_blocks(config.sliding_window, block_size))


def geometry_layers(config: BaichuanM1Config) -> tuple[list[int], list[int]]:
    """(global layer indices, sliding-window layer indices)."""
    layers = range(config.num_hidden_layers)
    return [i for i in layers if not config.is_sliding(i)], [i for i in layers if config.is_sliding(i)]


def block_bytes(config: BaichuanM1Config, layer_idx: int, block_size: int, dtype_bytes: int) -> int:
    """K+V bytes of one block in one layer."""
    _, n_kv, head_dim = config.layer_heads(layer_idx)
    return 2 * block_size * n_kv * head_dim * dtype_bytes


def conv_state_bytes_per_sequence(config: BaichuanM1Config, dtype_bytes: int = 2) -> int:
    """Raw last K and V of every layer (one slot per running sequence)."""
    return sum(2 * n_kv * d * dtype_bytes for n_kv, d in
               (config.layer_heads(i)[1:] for i in range(config.num_hidden_layers)))


def kv_cache_bytes_per_sequence(config: BaichuanM1Config, seq_len: int, block_size: int = 128,
                                dtype_bytes: int = 2) -> int:
    """Bytes of KV blocks one sequence of ``seq_len`` tokens holds at its peak (block rounding included)."""
    global_layers, sliding_layers = geometry_layers(config)
    global_blocks = blocks_for_tokens(seq_len, block_size)
    sliding_blocks = sliding_blocks_per_sequence(config, seq_len, block_size)
    return (sum(global_blocks * block_bytes(config, i, block_size, dtype_bytes) for i in global_layers)
            + sum(sliding_blocks * block_bytes(config, i, block_size, dtype_bytes) for i in sliding_layers))


def analytic_kv_bytes(config: BaichuanM1Config, seq_len: int, dtype_bytes: int = 2) -> int:
    """The unrounded minimum: every token in global layers, the last ``window`` in sliding ones."""
    global_layers, sliding_layers = geometry_layers(config)
    per_token = [2 * n_kv * d * dtype_bytes for n_kv, d in (config.layer_heads(i)[1:] for i in range(config.num_hidden_layers))]
    return (sum(per_token[i] * seq_len for i in global_layers)
            + sum(per_token[i] * min(seq_len, config.sliding_window) for i in sliding_layers))


def weight_bytes(config: BaichuanM1Config, dtype_bytes: int = 2) -> int:
    h, i, v = config.hidden_size, config.intermediate_size, config.vocab_size
    total = 2 * v * h + h  # embed, lm_head, final norm
    for layer in range(config.num_hidden_layers):
        _, n_kv, d = config.layer_heads(layer)
        total += (h + 2 * n_kv * d) * h + h * h + 3 * h * i + 2 * h + 2 * n_kv * config.conv_window
    return total * dtype_bytes


@dataclass
class MemoryPlan:
    max_seq_len: int
    block_size: int
    dtype_bytes: int
    kv_cache_bytes_per_sequence: int
    analytic_kv_bytes_per_sequence: int
    conv_state_bytes_per_sequence: int
    global_blocks_per_sequence: int
    sliding_blocks_per_sequence: int
    weight_bytes: int
    device_memory_bytes: int | None = None
    headroom_fraction: float = 0.1
    kv_budget_bytes: int | None = None
    max_concurrent_sequences: int | None = None

    def to_dict(self) -> dict[str, int | float | None]:
        return asdict(self)


def plan_memory(config: BaichuanM1Config, max_seq_len: int, block_size: int = 128, dtype_bytes: int = 2,
                device_memory_bytes: int | None = None, headroom_fraction: float = 0.1,
                tensor_parallel: int = 1) -> MemoryPlan:
    """Per-sequence KV bytes and, given device memory, how many sequences fit beside the weights.

    With ``tensor_parallel`` cards the weights and KV heads are split across them; the device
    memory given is per card. ``headroom_fraction`` of each card is kept for activations and the
    runtime's workspace.
    """
    kv = kv_cache_bytes_per_sequence(config, max_seq_len, block_size, dtype_bytes)
    conv = conv_state_bytes_per_sequence(config, dtype_bytes)
    weights = weight_bytes(config, dtype_bytes)
    plan = MemoryPlan(
        max_seq_len=max_seq_len, block_size=block_size, dtype_bytes=dtype_bytes,
        kv_cache_bytes_per_sequence=kv, analytic_kv_bytes_per_sequence=analytic_kv_bytes(config, max_seq_len, dtype_bytes),
        conv_state_bytes_per_sequence=conv,
        global_blocks_per_sequence=blocks_for_tokens(max_seq_len, block_size),
        sliding_blocks_per_sequence=sliding_blocks_per_sequence(config, max_seq_len, block_size),
        weight_bytes=weights, device_memory_bytes=device_memory_bytes, headroom_fraction=headroom_fraction,
    )
    if device_memory_bytes is not None:
        total = device_memory_bytes * tensor_parallel
        budget = int(total * (1 - headroom_fraction)) - weights
        plan.kv_budget_bytes = max(budget, 0)
        plan.max_concurrent_sequences = max(budget, 0) // (kv + conv)
    return plan
