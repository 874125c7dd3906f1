"""Runs one scheduled batch through the model over the paged KV cache.

The runner owns the device tensors: per layer a K and a V cache
``[num_blocks, block_size, n_kv * head_dim]`` in its geometry's pool, per layer conv state
``[num_slots + 1, n_kv, head_dim]`` (raw K/V of each slot's last token) and, with prefix caching,
per layer conv snapshots ``[num_global_blocks + 1, n_kv, head_dim]``: the raw K/V of the last token
of each full global block, so a prefix-cache hit resumes the conv exactly. The last row of each is
scratch for padding rows of a decode graph. ``PagedContext`` is the model's ``ForwardContext``
over these tensors. Pure decode steps go through ``decode_graph.DecodeGraphs`` when enabled.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import torch

from ..kernels import KernelBackend, PagedAttentionMetadata
from ..modeling import BaichuanM1ForCausalLM
from .decode_graph import DecodeGraphs
from .memory_plan import PoolSizes, blocks_for_tokens
from .scheduler import ScheduledBatch
from .sequence import Sequence

if TYPE_CHECKING:
    from ..finetune.adapters import AdapterBank


@dataclass
class LayerState:
    """One layer's slices of the device state."""

    key_cache: torch.Tensor
    value_cache: torch.Tensor
    conv_k: torch.Tensor
    conv_v: torch.Tensor
    snapshot_k: torch.Tensor | None
    snapshot_v: torch.Tensor | None
    sliding: bool


class StepLogits(NamedTuple):
    """What one step computed: next-token logits of the sequences that reached their last token, and,
    for requests with ``prompt_logprobs``, the logits at their chunk's prompt positions (row ``j`` of a
    chunk starting at ``s`` predicts prompt token ``s + j + 1``)."""

    seqs: list[Sequence]
    logits: torch.Tensor
    prompt_logits: list[tuple[Sequence, torch.Tensor]]


class PagedContext:
    """``ForwardContext`` for a varlen batch over the paged cache (see ``modeling.ForwardContext``)."""

    def __init__(self, backend: KernelBackend, positions: torch.Tensor, cu_seqlens: torch.Tensor,
                 state_slots: torch.Tensor, layers: list[LayerState], global_meta: PagedAttentionMetadata,
                 sliding_meta: PagedAttentionMetadata, snapshot: tuple[torch.Tensor, torch.Tensor] | None) -> None:
        """``snapshot``: (tokens, global blocks): each token's raw K/V becomes its block's conv snapshot."""
        self.backend = backend
        self.positions = positions
        self.cu_seqlens = cu_seqlens
        self.state_slots = state_slots
        self.layers = layers
        self.global_meta = global_meta
        self.sliding_meta = sliding_meta
        self.snapshot = snapshot

    def conv_kv(self, layer_idx: int, k: torch.Tensor, v: torch.Tensor,
                conv_k: torch.Tensor, conv_v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        layer = self.layers[layer_idx]
        if self.snapshot is not None and layer.snapshot_k is not None and layer.snapshot_v is not None:
            tokens, blocks = self.snapshot
            layer.snapshot_k[blocks] = k[tokens].to(layer.snapshot_k.dtype)
            layer.snapshot_v[blocks] = v[tokens].to(layer.snapshot_v.dtype)
        return self.backend.conv_kv(k, v, conv_k, conv_v, layer.conv_k, layer.conv_v, self.cu_seqlens,
                                    self.state_slots)

    def attention(self, layer_idx: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                  window: int | None, scale: float) -> torch.Tensor:
        layer = self.layers[layer_idx]
        meta = self.sliding_meta if layer.sliding else self.global_meta
        return self.backend.paged_attention(q, k, v, layer.key_cache, layer.value_cache, meta, window, scale)


def padded_table(tables: list[list[int | None]], device: torch.device) -> torch.Tensor:
    """int32 ``[S, max_blocks]``; blocks that left the window (None) and padding read as block 0."""
    width = max(len(t) for t in tables)
    rows = [[0 if b is None else b for b in t] + [0] * (width - len(t)) for t in tables]
    return torch.tensor(rows, dtype=torch.int32, device=device)


class ModelRunner:
    def __init__(self, model: BaichuanM1ForCausalLM, backend: KernelBackend, pools: PoolSizes, block_size: int,
                 enable_prefix_caching: bool, adapters: AdapterBank | None = None) -> None:
        self.model = model
        self.adapters = adapters
        self.backend = backend
        self.block_size = block_size
        self.enable_prefix_caching = enable_prefix_caching
        config = model.config
        param = next(model.parameters())
        self.device, self.dtype = param.device, param.dtype
        self.scratch_slot, self.scratch_snapshot = pools.num_slots, pools.global_blocks
        self.graphs: DecodeGraphs | None = None
        self.layers: list[LayerState] = []
        for i in range(config.num_hidden_layers):
            _, n_kv, head_dim = config.layer_heads(i)
            sliding = config.is_sliding(i)
            num_blocks = pools.sliding_blocks if sliding else pools.global_blocks
            cache_shape = (num_blocks, block_size, n_kv * head_dim)
            state_shape = (pools.num_slots + 1, n_kv, head_dim)
            snapshot_shape = (pools.global_blocks + 1, n_kv, head_dim)
            self.layers.append(LayerState(
                key_cache=self._zeros(cache_shape), value_cache=self._zeros(cache_shape),
                conv_k=self._zeros(state_shape), conv_v=self._zeros(state_shape),
                snapshot_k=self._zeros(snapshot_shape) if enable_prefix_caching else None,
                snapshot_v=self._zeros(snapshot_shape) if enable_prefix_caching else None,
                sliding=sliding,
            ))

    def _zeros(self, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.zeros(shape, dtype=self.dtype, device=self.device)

    def enable_graphs(self, sizes: list[int], max_model_len: int, progress: Callable[[str], None]) -> None:
        """Run pure decode steps as graphs, one per batch bucket in ``sizes``; compiles or captures them now."""
        window = self.model.config.sliding_window
        self.graphs = DecodeGraphs(self, sizes, blocks_for_tokens(max_model_len, self.block_size), window)
        self.graphs.warm_up(progress)

    def context(self, positions: torch.Tensor, cu_seqlens: torch.Tensor, state_slots: torch.Tensor,
                global_meta: PagedAttentionMetadata, sliding_meta: PagedAttentionMetadata,
                snapshot: tuple[torch.Tensor, torch.Tensor] | None) -> PagedContext:
        snapshot = snapshot if self.enable_prefix_caching else None
        return PagedContext(self.backend, positions, cu_seqlens, state_slots, self.layers, global_meta, sliding_meta,
                            snapshot)

    def kv_cache_bytes(self) -> int:
        """Device bytes of the caches, conv states and snapshots actually allocated."""
        return sum(t.numel() * t.element_size() for layer in self.layers
                   for t in (layer.key_cache, layer.value_cache, layer.conv_k, layer.conv_v,
                             layer.snapshot_k, layer.snapshot_v) if t is not None)

    def _init_slots(self, slot_inits: list[tuple[int, int | None]]) -> None:
        """Zero the conv state of fresh sequences; copy the snapshot for prefix-cache hits."""
        if not slot_inits:
            return
        fresh = [slot for slot, block in slot_inits if block is None]
        resumed = [(slot, block) for slot, block in slot_inits if block is not None]
        fresh_idx = torch.tensor(fresh, dtype=torch.long, device=self.device)
        res_slots = torch.tensor([s for s, _ in resumed], dtype=torch.long, device=self.device)
        res_blocks = torch.tensor([b for _, b in resumed], dtype=torch.long, device=self.device)
        for layer in self.layers:
            for state, snapshot in ((layer.conv_k, layer.snapshot_k), (layer.conv_v, layer.snapshot_v)):
                if fresh:
                    state[fresh_idx] = 0
                if resumed and snapshot is not None:
                    state[res_slots] = snapshot[res_blocks]

    def _metadata(self, seqs: list[Sequence], num_tokens: list[int], cu: torch.Tensor, context_lens: torch.Tensor,
                  token_seq: torch.Tensor, positions: torch.Tensor, sliding: bool) -> PagedAttentionMetadata:
        tables = padded_table([s.sliding_blocks if sliding else s.global_blocks for s in seqs], self.device)
        blocks = tables[token_seq, positions // self.block_size].long()
        return PagedAttentionMetadata(
            cu_seqlens_q=cu, context_lens=context_lens, block_tables=tables,
            slot_mapping=blocks * self.block_size + positions % self.block_size,
            block_size=self.block_size, max_query_len=max(num_tokens),
            max_context_len=max(s.num_computed_tokens + n for s, n in zip(seqs, num_tokens, strict=True)),
        )

    def _graph_step(self, batch: ScheduledBatch) -> bool:
        """A decode step the graphs can run: one token per sequence, no new slots, adapters or prompt logprobs."""
        return (self.graphs is not None and self.graphs.fits(len(batch.seqs)) and not batch.slot_inits
                and all(n == 1 for n in batch.num_tokens) and not any(s.adapter for s in batch.seqs)
                and not any(s.params.prompt_logprobs is not None and s.num_computed_tokens < s.num_prompt_tokens - 1
                            for s in batch.seqs))

    @torch.inference_mode()
    def execute(self, batch: ScheduledBatch) -> StepLogits:
        """Run the batch; return the sequences that reached their last token and their next-token logits."""
        seqs, num_tokens = batch.seqs, batch.num_tokens
        if self._graph_step(batch):
            assert self.graphs is not None
            hidden = self.graphs.run(seqs)
            last = [i for i, seq in enumerate(seqs) if seq.num_computed_tokens + 1 == len(seq)]
            rows = torch.tensor(last, device=self.device)
            return StepLogits([seqs[i] for i in last], self.model.compute_logits(hidden[rows]), [])
        self._init_slots(batch.slot_inits)
        ids: list[int] = []
        starts: list[int] = []
        for seq, n in zip(seqs, num_tokens, strict=True):
            ids += seq.token_ids[seq.num_computed_tokens:seq.num_computed_tokens + n]
            starts.append(seq.num_computed_tokens)
        dev = self.device
        counts = torch.tensor(num_tokens, dtype=torch.long)
        cu_long = torch.zeros(len(seqs) + 1, dtype=torch.long)
        torch.cumsum(counts, 0, out=cu_long[1:])
        token_seq = torch.repeat_interleave(torch.arange(len(seqs)), counts)
        positions = torch.tensor(starts, dtype=torch.long)[token_seq] + torch.arange(len(ids)) - cu_long[token_seq]
        context_lens = (torch.tensor(starts, dtype=torch.long) + counts).to(dev, torch.int32)
        cu = cu_long.to(dev, torch.int32)
        token_seq, positions = token_seq.to(dev), positions.to(dev)
        global_meta = self._metadata(seqs, num_tokens, cu, context_lens, token_seq, positions, sliding=False)
        sliding_meta = self._metadata(seqs, num_tokens, cu, context_lens, token_seq, positions, sliding=True)
        snapshot = None
        if self.enable_prefix_caching:
            closes_block = ((positions + 1) % self.block_size == 0).nonzero().squeeze(1)
            if closes_block.numel():
                snapshot = (closes_block, global_meta.slot_mapping[closes_block] // self.block_size)
        ctx = self.context(positions, cu, torch.tensor([s.slot for s in seqs], device=dev), global_meta, sliding_meta,
                           snapshot)
        names = [seq.adapter for seq in seqs]
        use_adapters = self.adapters is not None and any(names)
        with self.adapters.activate(names, num_tokens) if use_adapters else nullcontext():
            hidden = self.model.model(torch.tensor(ids, dtype=torch.long, device=dev), ctx)
        prompt_logits = self._prompt_logits(seqs, num_tokens, cu_long, hidden)
        last = [i for i, (seq, n) in enumerate(zip(seqs, num_tokens, strict=True)) if seq.num_computed_tokens + n == len(seq)]
        if not last:
            return StepLogits([], hidden.new_empty(0), prompt_logits)
        rows = cu_long[1:][last] - 1
        return StepLogits([seqs[i] for i in last], self.model.compute_logits(hidden[rows.to(dev)]), prompt_logits)

    def _prompt_logits(self, seqs: list[Sequence], num_tokens: list[int], cu_long: torch.Tensor,
                       hidden: torch.Tensor) -> list[tuple[Sequence, torch.Tensor]]:
        """Logits of every prompt position whose next token is still in the prompt, only for requests that ask."""
        out = []
        for i, (seq, n) in enumerate(zip(seqs, num_tokens, strict=True)):
            count = min(n, seq.num_prompt_tokens - 1 - seq.num_computed_tokens)
            if seq.params.prompt_logprobs is not None and count > 0:
                start = int(cu_long[i])
                out.append((seq, self.model.compute_logits(hidden[start:start + count])))
        return out
