"""Stand-in for ``mindie_llm.modeling.model_wrapper.model_info`` (MindIE-LLM 8b4871a, modeling/model_wrapper/model_info.py:13-38).

What the TG sizes the KV cache from: ``num_layers`` pairs of ``(block_size, num_kv_heads, head_size)``
blocks in ``dtype`` (see ``KVCacheSettings``).
"""

from __future__ import annotations

from typing import Any


class ModelInfo:
    def __init__(self, device: Any, dtype: Any, data_byte_size: int, num_layers: int, num_kv_heads: int, head_size: int,
                 **kwargs: Any) -> None:
        self.device = device
        self.dtype = dtype
        self.data_byte_size = data_byte_size
        self.num_layers = num_layers
        self.num_kv_heads = num_kv_heads
        self.head_size = head_size
        self.k_head_size = kwargs.get("k_head_size", self.head_size)
        self.v_head_size = kwargs.get("v_head_size", self.head_size)
        self.enable_nz = kwargs.get("enable_nz", False)
        self.kvcache_quant_layers = kwargs.get("kvcache_quant_layers", None)
        self.index_head_dim = kwargs.get("index_head_dim")
        self.num_index_heads = kwargs.get("num_index_heads")
