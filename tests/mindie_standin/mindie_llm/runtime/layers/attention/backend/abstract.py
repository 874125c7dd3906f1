"""Stand-in for ``mindie_llm.runtime.layers.attention.backend.abstract`` (MindIE-LLM 8b4871a, backend/abstract.py)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Generic, Protocol, TypeVar

import torch


class AttentionBackend(ABC):
    @staticmethod
    @abstractmethod
    def get_name() -> str:
        raise NotImplementedError

    @staticmethod
    @abstractmethod
    def get_impl_cls() -> type[AttentionImpl]:
        raise NotImplementedError

    @staticmethod
    @abstractmethod
    def get_builder_cls() -> Any:
        raise NotImplementedError


class AttentionMetadata:
    pass


T = TypeVar("T", bound=AttentionMetadata)


class AttentionLayer(Protocol):
    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, kv_cache: torch.Tensor,
                attn_metadata: AttentionMetadata) -> torch.Tensor: ...


class AttentionImpl(ABC, Generic[T]):
    @abstractmethod
    def forward(self, layer: AttentionLayer, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                kv_cache: torch.Tensor, attn_metadata: T, output: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def process_weights_after_loading(self) -> None:
        """The loader calls this for a leaf module whose ``impl`` is an ``AttentionImpl``."""


class SelectAttentionImpl(AttentionImpl[T], Generic[T]):
    @abstractmethod
    def forward(self, layer: Any, hidden_states: torch.Tensor, kv_cache: Any, cos_sin: Any) -> torch.Tensor:
        raise NotImplementedError

    def process_weights_after_loading(self) -> None:
        """Nothing to do after loading."""
