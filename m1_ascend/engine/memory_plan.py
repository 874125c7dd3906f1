"""What the paged KV cache really allocates per sequence, and how many sequences fit.

The two head geometries are planned separately: global layers keep every block of a
sequence; sliding-window layers keep only the blocks that overlap the last ``window`` tokens
(an unaligned window of W tokens touches at most ``ceil((W - 1) / block_size) + 1`` blocks).
The block manager sizes its pools with these same functions, so the plan is what runs.

With tensor parallelism every figure is per card: query heads, MLP columns and the vocabulary
are split over the cards, while a layer with fewer KV heads than cards keeps one (replicated)
KV head on each card, so the global layers' 2 KV heads stop shrinking beyond 2 cards.
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


def kv_heads_per_card(n_kv: int, tensor_parallel: int) -> int:
    """KV heads one card stores: split when they divide evenly, one replicated head when there are more cards."""
    if n_kv % tensor_parallel == 0:
        return n_kv // tensor_parallel
    if tensor_parallel % n_kv == 0:
        return 1
    raise ValueError(f"{n_kv} KV heads cannot be split over {tensor_parallel} cards")


def check_tensor_parallel(config: BaichuanM1Config, tensor_parallel: int) -> None:
    """Raise ValueError naming the config field that cannot be split over ``tensor_parallel`` cards."""
    if tensor_parallel < 1:
        raise ValueError(f"tensor parallel size must be >= 1, got {tensor_parallel}")
    for field in ("num_attention_heads", "num_swa_attention_heads", "intermediate_size"):
        if getattr(config, field) % tensor_parallel:
            raise ValueError(f"{field}={getattr(config, field)} cannot be split over {tensor_parallel} cards")
    for field in ("num_key_value_heads", "num_swa_key_value_heads"):
        kv_heads_per_card(getattr(config, field), tensor_parallel)


def valid_tensor_parallel_sizes(config: BaichuanM1Config, max_cards: int) -> list[int]:
    """Card counts up to ``max_cards`` the model can be split over (1, 2, 4 for the 14B geometry)."""
    sizes = []
    for tp in range(1, max_cards + 1):
        try:
            check_tensor_parallel(config, tp)
        except ValueError:
            continue
        sizes.append(tp)
    return sizes


def geometry_layers(config: BaichuanM1Config) -> tuple[list[int], list[int]]:
    """(global layer indices, sliding-window layer indices)."""
    layers = range(config.num_hidden_layers)
    return [i for i in layers if not config.is_sliding(i)], [i for i in layers if config.is_sliding(i)]


def token_kv_bytes(config: BaichuanM1Config, layer_idx: int, dtype_bytes: int = 2, tensor_parallel: int = 1) -> int:
    """K+V bytes of one token in one layer on one card."""
    _, n_kv, head_dim = config.layer_heads(layer_idx)
    return 2 * kv_heads_per_card(n_kv, tensor_parallel) * head_dim * dtype_bytes


def block_bytes(config: BaichuanM1Config, layer_idx: int, block_size: int, dtype_bytes: int,
                tensor_parallel: int = 1) -> int:
    """K+V bytes of one block in one layer (on one card)."""
    return block_size * token_kv_bytes(config, layer_idx, dtype_bytes, tensor_parallel)


def conv_state_bytes_per_sequence(config: BaichuanM1Config, dtype_bytes: int = 2, tensor_parallel: int = 1) -> int:
    """Raw last K and V of every layer (one slot per running sequence)."""
    return sum(token_kv_bytes(config, i, dtype_bytes, tensor_parallel) for i in range(config.num_hidden_layers))


def kv_cache_bytes_per_sequence(config: BaichuanM1Config, seq_len: int, block_size: int = 128,
                                dtype_bytes: int = 2, tensor_parallel: int = 1) -> int:
    """Bytes of KV blocks one sequence of ``seq_len`` tokens holds at its peak (block rounding included)."""
    global_layers, sliding_layers = geometry_layers(config)
    global_blocks = blocks_for_tokens(seq_len, block_size)
    sliding_blocks = sliding_blocks_per_sequence(config, seq_len, block_size)
    return (sum(global_blocks * block_bytes(config, i, block_size, dtype_bytes, tensor_parallel) for i in global_layers)
            + sum(sliding_blocks * block_bytes(config, i, block_size, dtype_bytes, tensor_parallel) for i in sliding_layers))


def analytic_kv_bytes(config: BaichuanM1Config, seq_len: int, dtype_bytes: int = 2, tensor_parallel: int = 1) -> int:
    """The unrounded minimum: every token in global layers, the last ``window`` in sliding ones."""
    global_layers, sliding_layers = geometry_layers(config)
    return (sum(token_kv_bytes(config, i, dtype_bytes, tensor_parallel) * seq_len for i in global_layers)
            + sum(token_kv_bytes(config, i, dtype_bytes, tensor_parallel) * min(seq_len, config.sliding_window)
                  for i in sliding_layers))


def weight_bytes(config: BaichuanM1Config, dtype_bytes: int = 2, tensor_parallel: int = 1) -> int:
    """Weight bytes on one card: matrices split over the cards, norms and replicated KV heads on each."""
    tp = tensor_parallel
    h, i, v = config.hidden_size, config.intermediate_size, config.vocab_size
    total = 2 * math.ceil(v / tp) * h + h  # embed, lm_head (vocab-parallel), final norm
    for layer in range(config.num_hidden_layers):
        n_h, n_kv, d = config.layer_heads(layer)
        q_width, kv = n_h // tp * d, kv_heads_per_card(n_kv, tp)
        total += (q_width + 2 * kv * d) * h + q_width * h + 3 * h * (i // tp) + 2 * h + 2 * kv * config.conv_window
    return total * dtype_bytes


def prefill_activation_bytes(config: BaichuanM1Config, num_tokens: int, dtype_bytes: int = 2,
                             tensor_parallel: int = 1) -> int:
    """Estimated peak of transient tensors on one card while prefilling ``num_tokens`` tokens.

    Layers run one after another, so one layer's tensors are the peak: the residual, norm,
    attention and MLP outputs are full width on every card; the packed QKV projection and the
    MLP's gate, up and activation are split over the cards. An estimate, not a measurement:
    runtimes add their own workspace, which the headroom covers.
    """
    tp = tensor_parallel
    h, i = config.hidden_size, config.intermediate_size
    widest_qkv = max(n_h // tp * d + 2 * kv_heads_per_card(n_kv, tp) * d
                     for n_h, n_kv, d in (config.layer_heads(layer) for layer in range(config.num_hidden_layers)))
    return num_tokens * (4 * h + widest_qkv + 3 * (i // tp)) * dtype_bytes


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
    tensor_parallel: int = 1
    prefill_tokens: int = 0
    prefill_activation_bytes: int = 0

    def to_dict(self) -> dict[str, int | float | None]:
        return asdict(self)


def plan_memory(config: BaichuanM1Config, max_seq_len: int, block_size: int = 128, dtype_bytes: int = 2,
                device_memory_bytes: int | None = None, headroom_fraction: float = 0.1,
                tensor_parallel: int = 1, prefill_tokens: int = 0) -> MemoryPlan:
    """Per-sequence KV bytes and, given device memory, how many sequences fit beside the weights.

    All byte figures are per card; ``device_memory_bytes`` is one card's memory. With
    ``tensor_parallel`` cards the weights and KV heads are split across them (see the module
    docstring). ``headroom_fraction`` of each card is kept for the runtime and the system, and the
    activations of a ``prefill_tokens``-token prefill are reserved next to the weights.
    """
    check_tensor_parallel(config, tensor_parallel)
    tp = tensor_parallel
    kv = kv_cache_bytes_per_sequence(config, max_seq_len, block_size, dtype_bytes, tp)
    conv = conv_state_bytes_per_sequence(config, dtype_bytes, tp)
    weights = weight_bytes(config, dtype_bytes, tp)
    activations = prefill_activation_bytes(config, prefill_tokens, dtype_bytes, tp)
    plan = MemoryPlan(
        max_seq_len=max_seq_len, block_size=block_size, dtype_bytes=dtype_bytes,
        kv_cache_bytes_per_sequence=kv,
        analytic_kv_bytes_per_sequence=analytic_kv_bytes(config, max_seq_len, dtype_bytes, tp),
        conv_state_bytes_per_sequence=conv,
        global_blocks_per_sequence=blocks_for_tokens(max_seq_len, block_size),
        sliding_blocks_per_sequence=sliding_blocks_per_sequence(config, max_seq_len, block_size),
        weight_bytes=weights, device_memory_bytes=device_memory_bytes, headroom_fraction=headroom_fraction,
        tensor_parallel=tp, prefill_tokens=prefill_tokens, prefill_activation_bytes=activations,
    )
    if device_memory_bytes is not None:
        budget = max(int(device_memory_bytes * (1 - headroom_fraction)) - weights - activations, 0)
        plan.kv_budget_bytes = budget
        plan.max_concurrent_sequences = budget // (kv + conv)
    return plan


# -- Pool sizing for the engine ---------------------------------------------------------------

def global_block_bytes(config: BaichuanM1Config, block_size: int, dtype_bytes: int, conv_snapshots: bool) -> int:
    """One global-pool block over all global layers, plus (with prefix caching) the conv snapshot kept with it."""
    global_layers, _ = geometry_layers(config)
    snapshot = conv_state_bytes_per_sequence(config, dtype_bytes) if conv_snapshots else 0
    return sum(block_bytes(config, i, block_size, dtype_bytes) for i in global_layers) + snapshot


def sliding_block_bytes(config: BaichuanM1Config, block_size: int, dtype_bytes: int) -> int:
    _, sliding_layers = geometry_layers(config)
    return sum(block_bytes(config, i, block_size, dtype_bytes) for i in sliding_layers)


def prefill_workspace_blocks(max_num_seqs: int, max_num_batched_tokens: int, block_size: int) -> int:
    """Sliding blocks a step's prefill chunks can hold beyond their sequences' windows.

    A chunk's tokens are written before its queries attend, so the newest blocks of a chunk
    are held until the step ends; the chunks of one step hold at most this many in total.
    """
    return blocks_for_tokens(max_num_batched_tokens, block_size) + max_num_seqs


@dataclass(frozen=True)
class PoolSizes:
    global_blocks: int
    sliding_blocks: int
    num_slots: int


def sliding_pool_cap(config: BaichuanM1Config, block_size: int, max_num_seqs: int, max_num_batched_tokens: int) -> int:
    """Most sliding blocks the engine can ever hold at once: every sequence's window plus the prefill workspace."""
    return (max_num_seqs * window_blocks(config.sliding_window, block_size)
            + prefill_workspace_blocks(max_num_seqs, max_num_batched_tokens, block_size))


def size_pools(config: BaichuanM1Config, kv_cache_bytes: int, block_size: int, dtype_bytes: int, max_num_seqs: int,
               max_num_batched_tokens: int, max_model_len: int, conv_snapshots: bool) -> PoolSizes:
    """Split a KV budget into the two pools and the conv-state slots (one per concurrent sequence).

    A sequence never holds more sliding than global blocks, so the pools are kept equal until
    the sliding pool reaches what all sequences' windows can use; the rest goes to global blocks.
    """
    g = global_block_bytes(config, block_size, dtype_bytes, conv_snapshots)
    s = sliding_block_bytes(config, block_size, dtype_bytes)
    budget = max(0, kv_cache_bytes - max_num_seqs * conv_state_bytes_per_sequence(config, dtype_bytes))
    cap = sliding_pool_cap(config, block_size, max_num_seqs, max_num_batched_tokens)
    if s == 0:  # no sliding layers: that pool is bookkeeping only
        num_global = budget // g
        num_sliding = num_global
    elif g == 0:  # no global layers and no snapshots: that pool is bookkeeping only
        num_sliding = min(budget // s, cap)
        num_global = max_num_seqs * blocks_for_tokens(max_model_len, block_size)
    else:
        num_global = num_sliding = budget // (g + s)
        if num_sliding > cap:
            num_sliding = cap
            num_global = (budget - cap * s) // g
    return PoolSizes(global_blocks=num_global, sliding_blocks=num_sliding, num_slots=max_num_seqs)


def kv_cache_demand(config: BaichuanM1Config, max_model_len: int, block_size: int, dtype_bytes: int, max_num_seqs: int,
                    max_num_batched_tokens: int, conv_snapshots: bool) -> int:
    """Bytes for ``max_num_seqs`` sequences of ``max_model_len`` tokens at once (the most the engine can use)."""
    num_global = max_num_seqs * blocks_for_tokens(max_model_len, block_size)
    num_sliding = min(num_global, sliding_pool_cap(config, block_size, max_num_seqs, max_num_batched_tokens))
    return (num_global * global_block_bytes(config, block_size, dtype_bytes, conv_snapshots)
            + num_sliding * sliding_block_bytes(config, block_size, dtype_bytes)
            + max_num_seqs * conv_state_bytes_per_sequence(config, dtype_bytes))
