"""A ``ForwardContext`` over MindIE's batch metadata and paged caches.

MindIE hands the model a flat token batch with, per token, a position and a cache slot, and per
sequence its total length, its block table and (on the host) ``seq_lens_list``. ``MindIEStep`` turns
that into our ``PagedAttentionMetadata`` terms; ``MindIEPagedContext`` runs the conv and attention of
each layer through the kernel backend on the views that ``CacheGeometry`` defines.

Decode steps are captured into ACL graphs by MindIE (and replayed with only
``actual_seq_lengths_kv`` refreshed, one list for every attention op), so ``MindIEStep.decode``
reads no device tensor on the host and keeps every shape fixed by the batch size:

- MindIE pads a decode batch to a captured size; pad rows have ``seq_lens == 0`` and stale
  positions, slots and table rows from earlier steps. Their slots become -1, so they write neither
  K/V nor conv state (the scatter kernel skips negative slots), and their outputs are discarded.
- Every layer reads the full table rows with the full lengths (``seq_lens_list``), so the one
  length list MindIE refreshes is right for all of them; sliding-window layers get their window
  from the kernel's band (TND, ``pre_tokens = W - 1``), not from trimmed tables.

Prefill runs eagerly and may read lengths on the host. In MindIE's warm-up every block table is
all zeros, so several tokens can map to one slot: only the last write of a slot is kept.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import torch

from ..kernels import HostLengths, KernelBackend, PagedAttentionMetadata
from .geometry import CacheGeometry


@dataclass
class MindIEStep:
    """One forward step in the engine's terms, derived from MindIE's metadata."""

    positions: torch.Tensor  # int64 [N]
    cu_seqlens_q: torch.Tensor  # int32 [S + 1]
    context_lens: torch.Tensor  # int32 [S]
    block_tables: torch.Tensor  # int32 [S, max_blocks]
    slots: torch.Tensor  # int64 [N]; -1: this token writes nothing
    state_writes: torch.Tensor  # bool [N]: the token's raw K/V become its block's conv state
    first_rows: torch.Tensor  # int64 [S]: each sequence's first new token in the flat batch
    host_lengths: HostLengths
    block_size: int

    @classmethod
    def decode(cls, positions: torch.Tensor, metadata: Any, block_size: int) -> MindIEStep:
        """One new token per row, padding rows included; no host read, shapes fixed by the row count."""
        n = positions.shape[0]
        device = positions.device
        lens = metadata.seq_lens[:n]
        real = lens > 0
        slots = _keep_last_write(torch.where(real, metadata.slot_mapping[:n].long(), -1))
        rows = torch.arange(n, device=device)
        return cls(positions=positions.long(), cu_seqlens_q=torch.arange(n + 1, dtype=torch.int32, device=device),
                   context_lens=lens.int(), block_tables=metadata.block_tables[:n].int(), slots=slots,
                   state_writes=real, first_rows=rows,
                   host_lengths=HostLengths([1] * n, [int(x) for x in metadata.seq_lens_list[:n]]),
                   block_size=block_size)

    @classmethod
    def prefill(cls, positions: torch.Tensor, metadata: Any, block_size: int) -> MindIEStep:
        """Recover where each sequence's new tokens start (host reads: prefill runs eagerly).

        MindIE gives ``seq_lens[i]`` (all tokens of sequence ``i`` once this step's are written) and
        the positions of the new tokens, which for each sequence run consecutively up to
        ``seq_lens[i] - 1``. So sequence ``i`` has ``seq_lens[i] - positions[start_i]`` new tokens.
        """
        device = positions.device
        lens = [int(x) for x in metadata.seq_lens.tolist()]
        first_positions = [int(x) for x in positions.tolist()]
        n_tokens = len(first_positions)
        q_lens, start = [], 0
        for i, length in enumerate(lens):
            q_len = length - first_positions[start] if start < n_tokens else 0
            if q_len < 1 or start + q_len > n_tokens:
                raise ValueError(f"MindIE batch is inconsistent: sequence {i} of length {length} "
                                 f"does not end inside the {n_tokens}-token batch")
            q_lens.append(q_len)
            start += q_len
        if start != n_tokens:
            raise ValueError(f"MindIE batch is inconsistent: {n_tokens} tokens but sequences cover {start}")
        ends = list(itertools.accumulate(q_lens))
        last = torch.zeros(n_tokens, dtype=torch.bool)
        last[[e - 1 for e in ends]] = True
        positions = positions.long()
        closes_block = (positions + 1) % block_size == 0
        slots = [int(x) for x in metadata.slot_mapping.tolist()]
        kept = {slot: index for index, slot in enumerate(slots) if slot >= 0}  # the last write of each slot
        slots = [slot if kept.get(slot) == index else -1 for index, slot in enumerate(slots)]
        return cls(positions=positions, cu_seqlens_q=torch.tensor([0, *ends], dtype=torch.int32, device=device),
                   context_lens=metadata.seq_lens.to(device, torch.int32),
                   block_tables=metadata.block_tables[:len(lens)].to(device, torch.int32),
                   slots=torch.tensor(slots, dtype=torch.int64, device=device),
                   state_writes=last.to(device) | closes_block,
                   first_rows=torch.tensor([0, *ends[:-1]], dtype=torch.int64, device=device),
                   host_lengths=HostLengths(q_lens, lens), block_size=block_size)

    def metadata(self, ratio: int) -> PagedAttentionMetadata:
        """Metadata for a layer that uses sub-block ``b * ratio`` of each physical block ``b``."""
        slots = self.slots
        if ratio != 1:
            moved = (slots // self.block_size) * (ratio * self.block_size) + slots % self.block_size
            slots = torch.where(slots >= 0, moved, -1)
        return PagedAttentionMetadata(
            cu_seqlens_q=self.cu_seqlens_q, context_lens=self.context_lens, block_tables=self.block_tables * ratio,
            slot_mapping=slots, block_size=self.block_size, max_query_len=max(self.host_lengths.query_lens),
            max_context_len=max(self.host_lengths.kv_lens), host_lengths=self.host_lengths)


def _keep_last_write(slots: torch.Tensor) -> torch.Tensor:
    """-1 for every token whose slot a later token of the batch writes too (static shapes: n x n)."""
    n = slots.shape[0]
    later = torch.ones(n, n, dtype=torch.bool, device=slots.device).triu(diagonal=1)
    overwritten = ((slots[:, None] == slots[None, :]) & later).any(dim=1)
    return torch.where(overwritten, -1, slots)


class MindIEPagedContext:
    """Implements ``m1_ascend.modeling.ForwardContext`` on MindIE's caches for one step.

    ``key_caches``/``value_caches`` hold one tensor per cache layer as MindIE allocated them: the
    decoder layers first, the conv-state layer last.
    """

    def __init__(self, backend: KernelBackend, step: MindIEStep, geometry: CacheGeometry,
                 key_caches: list[torch.Tensor], value_caches: list[torch.Tensor]) -> None:
        self.backend = backend
        self.positions = step.positions
        self.step = step
        self.geometry = geometry
        self.key_caches, self.value_caches = key_caches, value_caches
        self._metadata: dict[int, PagedAttentionMetadata] = {}
        # Conv state to read: the block holding each sequence's token before its first new one.
        first_positions = step.positions[step.first_rows]
        self.has_previous = (first_positions > 0)[:, None, None]
        previous_index = ((first_positions - 1).clamp(min=0) // step.block_size)[:, None]
        self.previous_blocks = step.block_tables.long().gather(1, previous_index).squeeze(1).clamp(min=0)
        # Conv state to write: each block keeps the raw K/V of the last token written into it.
        self.state_blocks = torch.where(step.state_writes & (step.slots >= 0), step.slots // step.block_size, -1)
        self.sequence_slots = torch.arange(step.first_rows.shape[0], device=step.positions.device)

    def conv_kv(self, layer_idx: int, k: torch.Tensor, v: torch.Tensor,
                conv_k: torch.Tensor, conv_v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        state_k, row = self.geometry.state_cache(self.key_caches[-1], layer_idx)
        state_v, _ = self.geometry.state_cache(self.value_caches[-1], layer_idx)
        rows = state_k.shape[1]
        # Read before writing: a decode token often lands in the block holding its predecessor.
        read = self.previous_blocks * rows + row
        previous_k = torch.where(self.has_previous, state_k.view(-1, *k.shape[1:])[read], 0).to(k.dtype)
        previous_v = torch.where(self.has_previous, state_v.view(-1, *v.shape[1:])[read], 0).to(v.dtype)
        out = self.backend.conv_kv(k, v, conv_k, conv_v, previous_k, previous_v, self.step.cu_seqlens_q,
                                   self.sequence_slots)
        written = torch.where(self.state_blocks >= 0, self.state_blocks * rows + row, -1)
        self.backend.write_paged_cache(k, v, state_k, state_v, written)
        return out

    def attention(self, layer_idx: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                  window: int | None, scale: float) -> torch.Tensor:
        ratio = self.geometry.layers[layer_idx].ratio
        if ratio not in self._metadata:
            self._metadata[ratio] = self.step.metadata(ratio)
        key_cache = self.geometry.token_cache(self.key_caches[layer_idx], layer_idx)
        value_cache = self.geometry.token_cache(self.value_caches[layer_idx], layer_idx)
        return self.backend.paged_attention(q, k, v, key_cache, value_cache, self._metadata[ratio], window, scale)
