"""Stand-in for ``mindie_llm.text_generator.utils.kvcache_settings`` (MindIE-LLM 8b4871a, kvcache_settings.py).

The KV cache geometry the TG allocates (:94-241): ``num_layers`` = the model's ``num_hidden_layers``
(+1 with speculative tokens), one ND block per layer and K/V of ``(block_size, num_kv_heads,
head_size)`` in the checkpoint dtype, and ``num_npu_blocks = npu_mem_bytes // cache_block_bytes``
where a cache block spans all layers' K and V. ``NPUSocInfo`` (:33-48) picks the NZ layout only for
SoC names *ending* in 910PremiumA/910ProA/910A/910ProB/910B or containing 310P -- Ascend910B1..B4
and the A3 names end otherwise, so they get ND. Deviation: MindIE asks ``acl.get_soc_name()``; the
stand-in asks the emulated ``torch_npu.npu.get_device_name()``. NZ shapes, int8 KV layers and index
caches are not modelled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from mindie_llm._standin import npu

NZ_KV_CACHE_FORMAT = 16
NZ_KV_CACHE_INT8_FORMAT = 32
INT8_BYTES_SIZE = 1

_NZ_SUFFIXES = ("910PremiumA", "910ProA", "910A", "910ProB", "910B")
_DTYPE_NAMES = {torch.float16: "float16", torch.bfloat16: "bfloat16", torch.float: "float", torch.int8: "int8"}


@dataclass
class NPUSocInfo:
    __slots__ = ["soc_name", "soc_version", "need_nz"]

    def __post_init__(self) -> None:
        self.soc_name = npu().get_device_name()
        self.need_nz = self.support_nz()

    def support_nz(self) -> bool:
        if self.soc_name is None:
            return False
        name = self.soc_name.upper()
        return any(name.endswith(suffix.upper()) for suffix in _NZ_SUFFIXES) or "310P" in name


class KVCacheSettings:
    __slots__ = ["backend_type", "num_layers", "num_heads", "head_size", "k_head_size", "v_head_size", "dtype",
                 "index_head_dim", "num_index_heads", "data_byte_size", "kvcache_quant_layers", "block_size", "cpu_mem",
                 "npu_mem", "npu_info", "rank", "dtype_str", "num_speculative_tokens", "mini_block_bytes",
                 "k_mini_block_bytes", "need_nz", "k_mini_block_bytes_quant", "v_mini_block_bytes", "index_mini_block_bytes",
                 "cache_block_bytes", "num_npu_blocks", "num_cpu_blocks", "npu_row_bytes", "cpu_row_bytes",
                 "npu_row_bytes_quant", "cpu_row_bytes_quant", "block_shape", "k_block_shape", "v_block_shape",
                 "k_block_quant_shape", "index_block_shape", "is_separated_pd"]

    def __init__(self, rank: int, model_info: Any, cpu_mem: float, npu_mem: float, block_size: int, backend_type: Any,
                 is_separated_pd: bool, num_speculative_tokens: int | None = None) -> None:
        if model_info.kvcache_quant_layers or model_info.index_head_dim is not None:
            raise NotImplementedError("not modelled: int8 KV layers and index caches")
        self.backend_type = backend_type
        self.rank = rank
        self.num_heads = model_info.num_kv_heads
        self.head_size = model_info.head_size
        self.k_head_size = model_info.k_head_size
        self.v_head_size = model_info.v_head_size
        self.index_head_dim = None
        self.num_index_heads = None
        self.dtype = model_info.dtype
        self.data_byte_size = model_info.data_byte_size
        self.kvcache_quant_layers = model_info.kvcache_quant_layers
        self.block_size = block_size
        self.cpu_mem = int(cpu_mem * 1024 ** 3)  # GiB -> bytes (:113-114)
        self.npu_mem = int(npu_mem * 1024 ** 3)
        self.npu_info = NPUSocInfo()
        self.npu_info.need_nz |= model_info.enable_nz
        self.need_nz = self.npu_info.need_nz
        if self.need_nz:
            raise NotImplementedError(f"not modelled: NZ KV caches (SoC {self.npu_info.soc_name})")
        self.dtype_str = self.dtype_to_str(backend_type, self.dtype)
        self.num_speculative_tokens = num_speculative_tokens or 0
        self.num_layers = model_info.num_layers + (self.num_speculative_tokens >= 1)
        total, k_total, v_total, _, _ = self._cal_kv_total_head_size()
        self.mini_block_bytes = block_size * self.data_byte_size * total
        self.k_mini_block_bytes = block_size * self.data_byte_size * k_total
        self.k_mini_block_bytes_quant = block_size * INT8_BYTES_SIZE * k_total
        self.v_mini_block_bytes = block_size * self.data_byte_size * v_total
        self.index_mini_block_bytes = 0
        self.cache_block_bytes = self.num_layers * (self.k_mini_block_bytes + self.v_mini_block_bytes)
        self.num_npu_blocks = self.npu_mem // self.cache_block_bytes
        self.num_cpu_blocks = self.cpu_mem // self.cache_block_bytes
        row = self.k_mini_block_bytes + self.v_mini_block_bytes
        self.npu_row_bytes = self.num_npu_blocks * row
        self.cpu_row_bytes = self.num_cpu_blocks * row
        self.npu_row_bytes_quant = self.num_npu_blocks * (self.k_mini_block_bytes_quant + self.v_mini_block_bytes)
        self.cpu_row_bytes_quant = self.num_cpu_blocks * (self.k_mini_block_bytes_quant + self.v_mini_block_bytes)
        self.is_separated_pd = is_separated_pd
        self._cal_set_kv_block_shapes()

    @staticmethod
    def dtype_to_str(backend_type: Any, dtype: torch.dtype) -> str:
        if dtype not in _DTYPE_NAMES:
            raise Exception("not supported kvcache dtype for ATB backend")
        return _DTYPE_NAMES[dtype]

    def _cal_set_kv_block_shapes(self) -> None:
        """ND blocks ``(block_size, kv_heads, head_size)``, K and V with their own head sizes (:187-229)."""
        self.block_shape = (self.block_size, self.num_heads, self.head_size)
        if self.k_head_size > 0 or self.v_head_size > 0:
            self.k_block_shape = (self.block_size, self.num_heads, self.k_head_size)
            self.v_block_shape = (self.block_size, self.num_heads, self.v_head_size)
            self.k_block_quant_shape = self.k_block_shape
        else:
            self.k_block_shape = self.v_block_shape = self.k_block_quant_shape = self.block_shape
        self.index_block_shape = None

    def _cal_kv_total_head_size(self) -> tuple[int, int, int, int, int]:
        total = self.num_heads * self.head_size
        if self.k_head_size > 0 or self.v_head_size > 0:
            k_total, v_total = self.num_heads * self.k_head_size, self.num_heads * self.v_head_size
        else:
            k_total = v_total = total
        return total, k_total, v_total, k_total, 0
