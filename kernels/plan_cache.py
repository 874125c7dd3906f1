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
    """Plans of the last few metadata objects.

    An entry is reused only for the same metadata object whose tensors are unchanged (same
    storage and version counter), so a caller that refills metadata in place still gets fresh
    plans. Tensors made under ``torch.inference_mode`` have no version counter; for them the
    check is identity and storage only (the engine builds fresh metadata every step).
    """

    def __init__(self, build: Callable[[PagedAttentionMetadata, int | None], Plan], size: int = 4) -> None:
        self.build = build
        self.size = size
        self._entries: list[tuple[PagedAttentionMetadata, tuple, dict[int | None, Plan]]] = []

    @staticmethod
    def _stamp(meta: PagedAttentionMetadata) -> tuple:
        tensors = (meta.cu_seqlens_q, meta.context_lens, meta.block_tables)
        return tuple((t.data_ptr(), None if t.is_inference() else t._version) for t in tensors) + (meta.block_size,)

    def get(self, meta: PagedAttentionMetadata, window: int | None) -> Plan:
        stamp = self._stamp(meta)
        plans = next((cached for held, held_stamp, cached in self._entries if held is meta and held_stamp == stamp), None)
        if plans is None:
            plans = {}
            self._entries = [(meta, stamp, plans), *self._entries][: self.size]
        if window not in plans:
            plans[window] = self.build(meta, window)
        return plans[window]
