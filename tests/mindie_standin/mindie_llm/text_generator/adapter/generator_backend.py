"""Stand-in for ``mindie_llm.text_generator.adapter.generator_backend`` (MindIE-LLM 8b4871a, adapter/generator_backend.py:37-170).

The constructor reads the service's model config, writes the parallel settings and
``max_batch_size`` back into it, and builds the model wrapper with ``get_model_wrapper(model_config,
backend_type)`` -- i.e. ``AclGraphModelWrapperExp(**model_config)``, which constructs the runner and
loads the weights. Keys of the service config that are also keys of the checkpoint's config.json
are written onto ``config`` (``update_config``, :236-239). Not modelled: the sampler (tests pick
tokens themselves), MindIE's typed config parsing, fault recovery.
"""

from __future__ import annotations

from typing import Any

from mindie_llm.modeling.model_wrapper import get_model_wrapper
from mindie_llm.text_generator.utils.model_input import ModelInput

MAX_WORLD_SIZE = 1048576
MAX_KEY_LENGTH = 256


class GeneratorBackend:
    def __init__(self, model_config: dict[str, Any]) -> None:
        self.model_name = model_config.get("model_name")
        backend_type = model_config["backend_type"]
        self.npu_device_id = int(model_config["npu_device_id"])
        self.local_rank = int(model_config["local_rank"])
        self.rank = int(model_config["rank"])
        self.world_size = int(model_config["world_size"])
        self.trust_remote_code = bool(model_config.get("trust_remote_code", False))
        self.distributed_enable = bool(model_config.get("distributed_enable", False))
        self.max_batch_size = int(model_config.get("max_batch_size", 0))
        self.block_size = int(model_config.get("block_size", 128))
        self.splitfuse_enabled = bool(model_config.get("splitfuse_enabled", False))
        self.kv_pool_backend = model_config.get("kv_pool_backend", "")
        self.kv_pool_config_path = model_config.get("kv_pool_config_path", "")
        if not 1 <= self.world_size <= MAX_WORLD_SIZE:
            raise ValueError("World size should be in the range of 1 to 1048576.")
        if not 0 <= self.rank < self.world_size:
            raise ValueError("Rank should be in the range of 0 to world_size - 1.")
        if not 0 <= self.local_rank < self.world_size:
            raise ValueError("Local rank should be in the range of 0 to world_size - 1.")
        self.dp = model_config.get("dp", -1)
        sp = model_config.get("sp", -1)
        self.sampler = None
        model_config.update(rank=self.rank, world_size=self.world_size, npu_device_id=self.npu_device_id,
                            local_rank=self.local_rank, dp=self.dp, tp=model_config.get("tp", -1), attn_inner_sp=sp, sp=sp,
                            cp=model_config.get("cp", -1), moe_tp=model_config.get("moe_tp", -1),
                            moe_ep=model_config.get("moe_ep", -1), distributed_enable=self.distributed_enable,
                            max_batch_size=self.max_batch_size)
        self.backend_type = backend_type
        self.model_wrapper = get_model_wrapper(model_config, backend_type)
        self.config = self.model_wrapper.config
        self.config_dict = self.model_wrapper.config_dict
        self.update_config(model_config)
        self.model_info = self.model_wrapper.model_info
        self.num_speculative_tokens = model_config.get("num_speculative_tokens", 0)
        self.llm_config = None
        self.enable_dap = False
        self.obfuscation_func = None
        self.device = None
        self.cache_pool = None
        self.is_fault_device = False
        self.max_position_embeddings = self.model_wrapper.max_position_embeddings

    @staticmethod
    def repeat_sample_param(param_tensor: Any, tokens_num_per_batch: Any) -> Any:
        raise NotImplementedError("not modelled: sampling")

    def configure_sampler(self, sampling_metadata: Any) -> None:
        raise NotImplementedError("not modelled: sampling")

    def init_sampler(self, eos_token_id: Any) -> None:
        raise NotImplementedError("not modelled: sampling")

    def set_device(self) -> None:
        """The base backend has no device to set."""

    def notify_force_stop_exception(self) -> None:
        raise NotImplementedError("not modelled: fault recovery")

    def execute_recover_command(self, command: str) -> dict:
        raise NotImplementedError("not modelled: fault recovery")

    def build_inputs(self, conversations: list[list[dict[str, str]]], **kwargs: Any) -> list[list[int]]:
        return [self.model_wrapper.make_context(conversation, **kwargs) for conversation in conversations]

    def clear_cache(self, sequence_ids: Any) -> int:
        raise NotImplementedError("not modelled: sampling caches")

    def update_config(self, kwargs: dict[str, Any]) -> None:
        for key, value in kwargs.items():
            if key in self.config_dict:
                setattr(self.config, key, value)

    def forward(self, model_inputs: ModelInput, **kwargs: Any) -> Any:
        return self.model_wrapper.forward(model_inputs, **kwargs)

    def sample(self, logits: Any, sampling_metadata: Any = None, sampling_param: Any = None, **kwargs: Any) -> Any:
        raise NotImplementedError("not modelled: sampling (the harness picks greedily from the logits)")
