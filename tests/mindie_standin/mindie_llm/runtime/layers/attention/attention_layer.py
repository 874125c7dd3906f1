"""Stand-in for ``mindie_llm.runtime.layers.attention.attention_layer`` (MindIE-LLM 8b4871a, attention_layer.py:22-93).

Building an ``Attention`` registers it under its prefix (the order MindIE binds KV caches in) and
gives it a child module ``attn_quant``, so an ``Attention`` is never a leaf of the weight loader's
walk (the loader reaches ``attn_quant``, which has no parameters without a quant config).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch
from mindie_llm.runtime.layers.custom_layer import CustomLayer

from . import update_global_attn_dict
from .backend import get_attn_backend
from .backend.abstract import AttentionBackend


class AttentionLayerBase(CustomLayer, ABC):
    @abstractmethod
    def get_attn_backend(self) -> AttentionBackend:
        """The backend whose builder's metadata class the forward context uses."""


class AttentionQuant(torch.nn.Module):
    def __init__(self, head_size: int, num_kv_heads: int | None, num_kv_heads_replicas: int | None,
                 weight_dtype: torch.dtype | None, quant_config: Any, prefix: str) -> None:
        super().__init__()
        self.prefix = None
        if quant_config:
            raise NotImplementedError("not modelled: KV-cache quantization (AttentionQuant with a quant config)")
        self.quant_method = None
        self.enable_kv_quant = False


class Attention(AttentionLayerBase):
    def __init__(self, num_heads: int, head_size: int, scale: float, num_kv_heads: int | None = None,
                 num_kv_heads_replicas: int | None = None, weight_dtype: torch.dtype | None = None,
                 quant_config: Any = None, prefix: str = "", attn_backend: AttentionBackend | None = None,
                 **extra_impl_args: Any) -> None:
        super().__init__()
        self.key_cache = None
        self.value_cache = None
        update_global_attn_dict(prefix, self)
        self.prefix = prefix
        self.attn_backend = get_attn_backend(use_mla=False) if attn_backend is None else attn_backend
        self.attn_quant = AttentionQuant(head_size, num_kv_heads, num_kv_heads_replicas, weight_dtype, quant_config, prefix)
        self.impl = self.attn_backend.get_impl_cls()(num_heads, head_size, scale, num_kv_heads,
                                                     self.attn_quant.quant_method, **extra_impl_args)

    def get_attn_backend(self) -> AttentionBackend:
        return self.attn_backend

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        return self.impl.forward(self, query, key, value, (self.key_cache, self.value_cache))
