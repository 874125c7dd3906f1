"""The operator interface every kernel backend implements.

The model calls only these operators for the parts that are special to Baichuan-M1 (the
short causal conv on K/V, windowed/global attention) and for the hot elementwise ops, so an
Ascend backend can replace each one without touching the model definition.

Tensor conventions (N = tokens of a flat varlen batch, S = sequences):
- ``q``: ``[N, n_heads, head_dim]``; ``k``/``v``: ``[N, n_kv_heads, head_dim]``.
- Paged caches, per layer: ``[num_blocks, block_size, n_kv_heads * head_dim]`` (the layout
  ``npu_fused_infer_attention_score`` reads), indexed through int32 block tables.
- Conv state, per layer: ``[num_slots, n_kv_heads, head_dim]`` holding the *raw* (pre-conv,
  pre-RoPE) K or V of the last token each slot has processed.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Protocol

import torch

_epochs = itertools.count()


@dataclass
class HostLengths:
    """Per-sequence lengths the caller knows on the host, for kernels that take host lists (FIA).

    A captured graph cannot read device tensors, so callers that can say these without reading
    them (the engine's scheduler, MindIE's ``seq_lens_list``) pass them here. ``kv_lens[i]`` counts
    the keys of row ``i`` of ``block_tables`` from its first column on: the context length when the
    rows hold the whole sequence, less when the caller dropped blocks before a window.
    """

    query_lens: list[int]
    kv_lens: list[int]


@dataclass
class PagedAttentionMetadata:
    """Where a flat batch of new tokens sits in one block pool.

    ``context_lens[i]`` counts all tokens of sequence ``i`` once this step's tokens are written;
    its new tokens are the last ``cu_seqlens_q[i+1] - cu_seqlens_q[i]`` of them. Slots below 0
    in ``slot_mapping`` are padding: their K/V are not written (the Ascend scatter kernel's rule).

    ``epoch`` (a host int, process-unique) names the contents: backends derive per-step plans from the
    metadata once and reuse them for every layer while the epoch is unchanged. Metadata built
    fresh per step gets a fresh epoch; static metadata refilled in place calls ``advance()``.
    ``host_lengths``, when set, are used instead of reading lengths back from the device.
    ``epoch_source``, a host int64 scalar tensor, stands for ``epoch`` when the metadata is built
    inside a compiled graph, where a Python int would be frozen at compile time.
    """

    cu_seqlens_q: torch.Tensor  # int32 [S + 1]
    context_lens: torch.Tensor  # int32 [S]
    block_tables: torch.Tensor  # int32 [S, max_blocks]; entries outside a window may be stale
    slot_mapping: torch.Tensor  # int64 [N]; block * block_size + offset for each new token
    block_size: int
    max_query_len: int
    max_context_len: int
    epoch: int = field(default_factory=lambda: next(_epochs))
    host_lengths: HostLengths | None = None
    epoch_source: torch.Tensor | None = None

    def advance(self) -> None:
        """Mark the tensors as refilled: plans derived from the old contents are stale."""
        self.epoch = next(_epochs)


class KernelBackend(Protocol):
    """What the model needs from a device. ``name`` is shown by ``m1-ascend doctor``."""

    name: str

    def rms_norm(self, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        """RMSNorm computed in fp32, cast to ``weight.dtype``, then scaled by ``weight``."""
        ...

    def silu_and_mul(self, gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
        """SwiGLU activation ``silu(gate) * up``."""
        ...

    def rotary(
        self, q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Rotate-half RoPE in fp32 (``cos``/``sin``: ``[N, head_dim]`` fp32), rounded once."""
        ...

    def conv_kv(
        self,
        k: torch.Tensor,
        v: torch.Tensor,
        conv_k: torch.Tensor,
        conv_v: torch.Tensor,
        state_k: torch.Tensor,
        state_v: torch.Tensor,
        cu_seqlens: torch.Tensor,
        state_slots: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Width-2 causal conv per KV head on a varlen batch, exact across chunk boundaries.

        ``conv_k``/``conv_v``: ``[n_kv_heads, 2]`` (index 0 weighs the previous token).
        Sequence ``i`` (tokens ``cu_seqlens[i]:cu_seqlens[i+1]``) reads its previous token from
        ``state[state_slots[i]]`` and leaves its last raw token there (updated in place).
        """
        ...

    def dense_attention(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        q_positions: torch.Tensor,
        k_positions: torch.Tensor,
        k_valid: torch.Tensor,
        window: int | None,
        scale: float,
    ) -> torch.Tensor:
        """Padded-batch attention (``q``: ``[B, T, H, D]``, ``k``/``v``: ``[B, S, G, D]``).

        Key ``s`` is visible to query ``t`` iff it is valid, ``pos_s <= pos_t`` and, with a
        window ``W``, ``pos_s > pos_t - W`` (the query sees the last ``W`` positions incl. itself).
        """
        ...

    def write_paged_cache(
        self,
        k: torch.Tensor,
        v: torch.Tensor,
        key_cache: torch.Tensor,
        value_cache: torch.Tensor,
        slot_mapping: torch.Tensor,
    ) -> None:
        """Scatter rows ``[N, n_kv, head_dim]`` into paged caches at flat slots; slots < 0 write nothing."""
        ...

    def paged_attention(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        key_cache: torch.Tensor,
        value_cache: torch.Tensor,
        meta: PagedAttentionMetadata,
        window: int | None,
        scale: float,
    ) -> torch.Tensor:
        """Write the new ``k``/``v`` at ``meta.slot_mapping``, then attend over the paged cache."""
        ...
