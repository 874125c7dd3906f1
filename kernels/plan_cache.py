"""Per-step index plans shared by every layer of a block pool.

All layers of one geometry attend with the same metadata in a step, so the gather indices,
masks and host-side lengths a backend derives from it are computed once per (metadata, window)
and reused by the other layers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from .interface import PagedAttentionMetadata

Plan = TypeVar("Plan")


class PlanCache(Generic[Plan]):
    """Plans of the last few metadata contents.

    An entry is keyed by the metadata's epoch, its tensors' storage and (outside
    ``torch.inference_mode``) their version counters: metadata built fresh per step, or static
    metadata refilled in place that calls ``advance()`` (or bumps a version), gets fresh plans.
    The key does not depend on the metadata object itself, so code that rebuilds the dataclass
    around the same tensors (an opaque custom op) still shares one plan per step.
    """

    def __init__(self, build: Callable[[PagedAttentionMetadata, int | None], Plan], size: int = 4) -> None:
        self.build = build
        self.size = size
        self._entries: list[tuple[tuple, dict[int | None, Plan]]] = []

    @staticmethod
    def _stamp(meta: PagedAttentionMetadata) -> tuple:
        if meta.epoch_source is not None:  # static buffers refilled per step: the epoch alone names the contents
            return int(meta.epoch_source), meta.block_tables.data_ptr(), meta.slot_mapping.data_ptr()
        tensors = (meta.cu_seqlens_q, meta.context_lens, meta.block_tables, meta.slot_mapping)
        return tuple((t.data_ptr(), None if t.is_inference() else t._version) for t in tensors) + (
            meta.block_size, meta.epoch)

    def get(self, meta: PagedAttentionMetadata, window: int | None) -> Plan:
        stamp = self._stamp(meta)
        plans = next((cached for held, cached in self._entries if held == stamp), None)
        if plans is None:
            plans = {}
            self._entries = [(stamp, plans), *self._entries][: self.size]
        if window not in plans:
            plans[window] = self.build(meta, window)
        return plans[window]
