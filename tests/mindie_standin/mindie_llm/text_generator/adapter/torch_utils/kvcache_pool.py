"""Stand-in for ``mindie_llm.text_generator.adapter.torch_utils.kvcache_pool`` (MindIE-LLM 8b4871a).

``allocate_npu_kvcache`` (:87-111, default branch :412-448) makes ``npu_cache``: one ``(key_blocks,
value_blocks)`` pair per layer, each ``(num_npu_blocks, block_size, kv_heads, head_size)`` from
``torch_npu.empty_with_format(..., acl_format=2)`` (ND; 29 would be NZ) -- uninitialised device
memory. Deviation: the stand-in fills new caches with NaN, so any read of memory nothing wrote
turns into NaN logits. CPU swap space is allocated the same way (``torch.empty``). The
memory-bridge swapper, KV pool / PD-separated aligned tensors and swapping are not modelled.
"""

from __future__ import annotations

from typing import Any

import torch
from mindie_llm.text_generator.utils.kvcache_settings import KVCacheSettings


class KVCachePool:
    __slots__ = ["kvcache_settings", "device", "npu_cache", "cpu_cache", "npu_blocks_addrs", "cpu_blocks_addrs",
                 "k_blocks_addrs", "v_blocks_addrs", "k_blocks_quant_addrs", "index_blocks_addrs", "swapper",
                 "swap_kvcache_method", "use_mb_swapper", "acl_format", "total_h2d_swap_count", "total_d2h_swap_count",
                 "enable_kv_pool"]

    def __init__(self, kvcache_settings: KVCacheSettings, device: Any, enable_kv_pool: bool = False) -> None:
        if enable_kv_pool:
            raise NotImplementedError("not modelled: the KV pool (mempool) backend")
        self.npu_cache: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.cpu_cache: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.kvcache_settings = kvcache_settings
        self.device = device
        self.enable_kv_pool = enable_kv_pool
        self.acl_format = 29 if kvcache_settings.npu_info.need_nz else 2  # 29: NZ, 2: ND (:56-57)
        self.total_h2d_swap_count = 0
        self.total_d2h_swap_count = 0
        self.use_mb_swapper = False
        self.swapper = None
        self.swap_kvcache_method = self.sync_swap_base
        self.cpu_blocks_addrs: list[int] = []
        self.npu_blocks_addrs: list[int] = []
        self.k_blocks_addrs: list[int] = []
        self.v_blocks_addrs: list[int] = []
        self.k_blocks_quant_addrs: list[int] = []
        self.index_blocks_addrs: list[int] = []

    def get_npu_blocks_addrs(self) -> list[int]:
        return self.npu_blocks_addrs

    def allocate_npu_kvcache(self) -> None:
        self.npu_cache.clear()
        if self.kvcache_settings.num_npu_blocks < 0:
            raise ValueError(f"Invalid number of NPU blocks: {self.kvcache_settings.num_npu_blocks}. "
                             "It must be non-negative. This is due to warm_up out of memory.")
        if self.kvcache_settings.is_separated_pd:
            raise NotImplementedError("not modelled: PD-separated (aligned) KV caches")
        self._allocate_npu_kvcache_base()

    def allocate_cpu_kvcache(self) -> None:
        settings = self.kvcache_settings
        for _ in range(settings.num_layers):
            key_blocks = torch.empty((settings.num_cpu_blocks, *settings.k_block_shape), dtype=settings.dtype)
            value_blocks = torch.empty((settings.num_cpu_blocks, *settings.v_block_shape), dtype=settings.dtype)
            self.cpu_cache.append((key_blocks, value_blocks))
            self.cpu_blocks_addrs += [key_blocks.data_ptr(), value_blocks.data_ptr()]

    def sync_swap_mb(self, swap_decision: Any) -> None:
        raise NotImplementedError("not modelled: memory-bridge swapping")

    def sync_swap_base(self, swap_decision: Any) -> None:
        raise NotImplementedError("not modelled: swapping blocks between NPU and CPU")

    def _create_aligned_tensor(self, target_shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        raise NotImplementedError("not modelled: 2 MiB-aligned caches (PD separation, KV pool)")

    def _allocate_npu_kvcache_mb(self) -> None:
        raise NotImplementedError("not modelled: memory-bridge swapping")

    def _allocate_npu_kvcache_base(self) -> None:
        settings = self.kvcache_settings
        for _ in range(settings.num_layers):
            key_blocks = torch.full((settings.num_npu_blocks, *settings.k_block_shape), float("nan"), dtype=settings.dtype,
                                    device=self.device)
            value_blocks = torch.full((settings.num_npu_blocks, *settings.v_block_shape), float("nan"),
                                      dtype=settings.dtype, device=self.device)
            self.npu_cache.append((key_blocks, value_blocks))
