"""Stand-in for ``mindie_llm.text_generator.adapter.generator_aclgraph`` (MindIE-LLM 8b4871a, adapter/generator_aclgraph.py).

The torch backend of the text generator: ``forward`` hands the TG's ``ModelInput`` and the pool's
``npu_cache`` to the wrapper (:195-199); ``update_cache_policy`` replaces the KV pool (:204-223);
``compile`` binds the pool and captures (:201-202). Data/context/sequence parallel input
partitioning (the ``_dp_*``/``_cp_*`` helpers) raises "not modelled" where MindIE would branch; the
helpers themselves are omitted. Streams are not modelled (the emulator runs everything in order).
"""

from __future__ import annotations

from enum import Enum
from typing import Any

import numpy as np
import torch
from mindie_llm._standin import npu
from mindie_llm.text_generator.adapter.generator_backend import MAX_KEY_LENGTH, GeneratorBackend
from mindie_llm.text_generator.adapter.torch_utils.kvcache_pool import KVCachePool
from mindie_llm.text_generator.utils.model_input import ModelInput


class ExpertParallelDegree(int, Enum):
    NO_EP = 0
    STATIC_EP = 1
    DYNAMIC_EP = 2
    MIX_EP = 3


def check_model_config(model_config: dict[str, Any]) -> None:
    """Range checks of the service config (generator_aclgraph.py:39-73)."""
    model_name = model_config.get("model_name")
    if model_name is not None and not 1 <= len(model_name) <= MAX_KEY_LENGTH:
        raise ValueError("The length of `model_name` should be in range of [1, 256].")
    max_position_embeddings = model_config.get("max_position_embeddings")
    if max_position_embeddings is not None and max_position_embeddings <= 0:
        raise ValueError("`max_position_embeddings` must be greater than 0.")
    shards = model_config.get("num_lccl_comm_shards", 1)
    if not 0 <= shards <= 65536:
        raise ValueError("`num_lccl_comm_shards` must be in the range of [0, 65536].")
    if not 0 <= model_config.get("lccl_comm_shard_id", 0) < shards:
        raise ValueError("`lccl_comm_shard_id` must be in the range of [0, `num_lccl_comm_shards`).")


class GeneratorAclGraph(GeneratorBackend):
    cache_pool: KVCachePool = None

    def __init__(self, model_config: dict[str, Any]) -> None:
        super().__init__(model_config)
        check_model_config(model_config)
        self.tokenizer = self.model_wrapper.tokenizer
        self.device = self.model_wrapper.device
        self.rank = self.model_wrapper.rank
        self.adapter_manager = self.model_wrapper.adapter_manager
        self.mapping = self.model_wrapper.mapping
        self.llm_config = self.model_wrapper.model_runner.llm_config
        self.enable_kv_pool = len(self.kv_pool_backend) != 0 and len(self.kv_pool_config_path) != 0
        self.cp_rank, self.sp_rank, self.sp_size, self.cp_size = 0, 0, 1, 1
        if self.mapping.has_attn_inner_sp() or self.mapping.has_attn_cp():
            raise NotImplementedError("not modelled: sequence / context parallelism")

    @staticmethod
    def synchronize() -> None:
        npu().current_stream().synchronize()

    def get_new_stream(self) -> Any:
        raise NotImplementedError("not modelled: side streams")

    def set_device(self) -> None:
        """No device to select on a CPU machine (MindIE: ``torch_npu.npu.set_device(npu_device_id)``)."""

    def to_tensor_async(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(array).to(self.device)

    def to_tensor(self, data: Any) -> torch.Tensor:
        return torch.tensor(data, device=self.device)

    def prepare_model_inputs(self, model_input: ModelInput, **kwargs: Any) -> tuple[ModelInput, dict[str, Any]]:
        self._prepare_model_inputs(model_input, kwargs)
        return self.model_wrapper.prepare_model_inputs(model_input, **kwargs)

    def forward_from_model_inputs(self, model_input: ModelInput, **kwargs: Any) -> Any:
        raise NotImplementedError("not modelled: asynchronous inference (ModelOutput)")

    def sample(self, logits: Any, sampling_metadata: Any = None, sampling_param: Any = None, **kwargs: Any) -> Any:
        raise NotImplementedError("not modelled: sampling (the harness picks greedily from the logits)")

    def forward(self, model_inputs: ModelInput, **kwargs: Any) -> Any:
        self._prepare_model_inputs(model_inputs, kwargs)
        return self.model_wrapper.forward(model_inputs, self.cache_pool.npu_cache, **kwargs)

    def compile(self) -> None:
        self.model_wrapper.model_runner.compile(self.cache_pool.npu_cache)

    def update_cache_policy(self, kvcache_settings: Any, sepd_worker: Any = None) -> None:
        """A new pool replaces the old one: CPU swap space, then the NPU caches."""
        if sepd_worker:
            raise NotImplementedError("not modelled: PD separation (KV transfer registration)")
        self.cache_pool = KVCachePool(kvcache_settings, self.device, enable_kv_pool=self.enable_kv_pool)
        self.cache_pool.allocate_cpu_kvcache()
        self.cache_pool.allocate_npu_kvcache()

    def clear_kv_cache(self) -> None:
        del self.cache_pool

    def swap_cache(self, swap_decision: Any) -> None:
        raise NotImplementedError("not modelled: swapping blocks between NPU and CPU")

    def update_cache_after_switch_pd_role(self) -> None:
        raise NotImplementedError("not modelled: PD role switch")

    def _execute_cmd_reinit_npu(self) -> None:
        raise NotImplementedError("not modelled: fault recovery")

    def _warm_up(self, model_inputs: ModelInput, **kwargs: Any) -> None:
        raise NotImplementedError("not modelled: prefill/decode-PA warm-up (Generator drives the standard warm-up)")

    def _prepare_model_inputs(self, model_inputs: ModelInput, model_kwargs: dict[str, Any]) -> None:
        """Nothing to partition on one NPU without TP; the DP/CP/TP branches are not modelled (:282-336)."""
        mapping = self.mapping
        has_tp = mapping.has_attn_tp() or mapping.has_attn_o_proj_tp() or mapping.lm_head_tp.group_size > 1
        if mapping.has_dp() or mapping.has_attn_cp() or (has_tp and self.distributed_enable):
            raise NotImplementedError("not modelled: DP / CP / distributed TP input partitioning")
        if mapping.has_attn_inner_sp() and not model_inputs.is_prefill:
            raise NotImplementedError("Do not support sp currently.")
