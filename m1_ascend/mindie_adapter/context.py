"""A ``ForwardContext`` over MindIE's batch metadata and paged caches.

MindIE hands the model a flat token batch with, per token, a position and a cache slot, and per
sequence its total length and block table. ``StepLayout`` turns that into our
``PagedAttentionMetadata`` terms; ``MindIEPagedContext`` runs the conv and attention of each layer
through the kernel backend on the views that ``CacheGeometry`` defines, reading and writing the
conv state kept per block in the state layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..kernels import KernelBackend, PagedAttentionMetadata
from .geometry import CacheGeometry


@dataclass
class StepLayout:
    """One forward step in the engine's terms, derived from MindIE's per-sequence tensors."""

    cu_seqlens_q: torch.Tensor  # int32 [S + 1]
    context_lens: torch.Tensor  # int32 [S]
    block_tables: torch.Tensor  # int32 [S, max_blocks]
    slot_mapping: torch.Tensor  # int64 [N]
    block_size: int
    max_query_len: int
    max_context_len: int

    @classmethod
    def from_mindie(cls, positions: torch.Tensor, seq_lens: torch.Tensor, block_tables: torch.Tensor,
                    slot_mapping: torch.Tensor, block_size: int) -> StepLayout:
        """Recover where each sequence's new tokens start in the flat batch.

        MindIE gives ``seq_lens[i]`` (all tokens of sequence ``i`` once this step's are written) and
        the positions of the new tokens, which for each sequence run consecutively up to
        ``seq_lens[i] - 1``. So sequence ``i`` has ``seq_lens[i] - positions[start_i]`` new tokens.
        """
        n_tokens, n_seqs = positions.shape[0], seq_lens.shape[0]
        lens = seq_lens.to("cpu", torch.int64)
        if n_tokens == n_seqs:  # pure decode: one token per sequence
            q_lens = torch.ones(n_seqs, dtype=torch.int64)
        else:
            first_positions = positions.to("cpu", torch.int64)
            q_lens = torch.empty(n_seqs, dtype=torch.int64)
            start = 0
            for i in range(n_seqs):
                q_len = int(lens[i]) - int(first_positions[start]) if start < n_tokens else 0
                if q_len < 1 or start + q_len > n_tokens:
                    raise ValueError(f"MindIE batch is inconsistent: sequence {i} of length {int(lens[i])} "
                                     f"does not end inside the {n_tokens}-token batch")
                q_lens[i] = q_len
                start += q_len
            if start != n_tokens:
                raise ValueError(f"MindIE batch is inconsistent: {n_tokens} tokens but sequences cover {start}")
        device = positions.device
        cu = torch.zeros(n_seqs + 1, dtype=torch.int32)
        cu[1:] = torch.cumsum(q_lens, 0)
        return cls(
            cu_seqlens_q=cu.to(device),
            context_lens=seq_lens.to(device, torch.int32),
            block_tables=block_tables.to(device, torch.int32),
            slot_mapping=slot_mapping.to(device, torch.int64),
            block_size=block_size,
            max_query_len=int(q_lens.max()),
            max_context_len=int(lens.max()),
        )

    def for_ratio(self, ratio: int) -> PagedAttentionMetadata:
        """Metadata for a layer that uses sub-block ``b * ratio`` of each physical block ``b``."""
        slots = self.slot_mapping
        if ratio != 1:
            blocks, offsets = slots // self.block_size, slots % self.block_size
            slots = blocks * (ratio * self.block_size) + offsets
        return PagedAttentionMetadata(
            cu_seqlens_q=self.cu_seqlens_q,
            context_lens=self.context_lens,
            block_tables=self.block_tables * ratio,
            slot_mapping=slots,
            block_size=self.block_size,
            max_query_len=self.max_query_len,
            max_context_len=self.max_context_len,
        )


class MindIEPagedContext:
    """Implements ``m1_ascend.modeling.ForwardContext`` on MindIE's caches for one step.

    ``key_caches``/``value_caches`` hold one tensor per cache layer as MindIE allocated them: the
    decoder layers first, the conv-state layer last.
    """

    def __init__(self, backend: KernelBackend, positions: torch.Tensor, layout: StepLayout,
                 geometry: CacheGeometry, key_caches: list[torch.Tensor], value_caches: list[torch.Tensor]) -> None:
        self.backend = backend
        self.positions = positions
        self.layout = layout
        self.geometry = geometry
        self.key_caches, self.value_caches = key_caches, value_caches
        self._metadata: dict[int, PagedAttentionMetadata] = {}
        cu = layout.cu_seqlens_q.long()
        block_size = layout.block_size
        # Conv state to read: the block holding each sequence's token before its first new one.
        first_positions = positions[cu[:-1]]
        self.has_previous = (first_positions > 0)[:, None, None]
        previous_index = ((first_positions - 1).clamp(min=0) // block_size)[:, None]
        self.previous_blocks = layout.block_tables.long().gather(1, previous_index).squeeze(1)
        # Conv state to write: the last new token of each sequence, and every new token that fills
        # its block, saved into the block it was written to (one writer per block per step).
        closes_block = (positions + 1) % block_size == 0
        is_last = torch.zeros_like(closes_block)
        is_last[cu[1:] - 1] = True
        written = (is_last | closes_block) & (layout.slot_mapping >= 0)
        self.state_tokens = written.nonzero().squeeze(1)
        self.state_blocks = layout.slot_mapping[self.state_tokens] // block_size
        self.sequence_slots = torch.arange(cu.numel() - 1, device=positions.device)

    def conv_kv(self, layer_idx: int, k: torch.Tensor, v: torch.Tensor,
                conv_k: torch.Tensor, conv_v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rows_k = self.geometry.state_rows(self.key_caches[-1], layer_idx)
        rows_v = self.geometry.state_rows(self.value_caches[-1], layer_idx)
        # Read before writing: a decode token often lands in the block holding its predecessor.
        state_k = torch.where(self.has_previous, rows_k[self.previous_blocks], 0).to(k.dtype)
        state_v = torch.where(self.has_previous, rows_v[self.previous_blocks], 0).to(v.dtype)
        out = self.backend.conv_kv(k, v, conv_k, conv_v, state_k, state_v,
                                   self.layout.cu_seqlens_q, self.sequence_slots)
        rows_k[self.state_blocks] = k[self.state_tokens].to(rows_k.dtype)
        rows_v[self.state_blocks] = v[self.state_tokens].to(rows_v.dtype)
        return out

    def attention(self, layer_idx: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                  window: int | None, scale: float) -> torch.Tensor:
        ratio = self.geometry.layers[layer_idx].ratio
        if ratio not in self._metadata:
            self._metadata[ratio] = self.layout.for_ratio(ratio)
        key_cache = self.geometry.token_cache(self.key_caches[layer_idx], layer_idx)
        value_cache = self.geometry.token_cache(self.value_caches[layer_idx], layer_idx)
        return self.backend.paged_attention(q, k, v, key_cache, value_cache, self._metadata[ratio], window, scale)
