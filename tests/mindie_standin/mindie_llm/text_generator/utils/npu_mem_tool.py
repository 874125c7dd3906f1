"""Stand-in for ``mindie_llm.text_generator.utils.npu_mem_tool`` (MindIE-LLM 8b4871a): the block-size arithmetic only."""

from __future__ import annotations

from typing import Any


def calc_block_mem(model_info: Any, block_size: int, num_speculative_tokens: int | None = None) -> int:
    """Bytes one KV block takes over all layers, K and V (npu_mem_tool.py:160-184; one more layer with MTP)."""
    num_layers = model_info.num_layers + ((num_speculative_tokens or 0) >= 1)
    if model_info.k_head_size > 0 or model_info.v_head_size > 0:
        k_width = model_info.num_kv_heads * model_info.k_head_size
        v_width = model_info.num_kv_heads * model_info.v_head_size
    else:
        k_width = v_width = model_info.num_kv_heads * model_info.head_size
    if model_info.kvcache_quant_layers or model_info.index_head_dim is not None:
        raise NotImplementedError("not modelled: int8 KV layers and index caches")
    return num_layers * (k_width + v_width) * model_info.data_byte_size * block_size


def gb(mem_size: float) -> float:
    """Bytes to GiB (npu_mem_tool.py:193-203)."""
    return mem_size / (1024 ** 3)
