"""Stand-in for ``mindie_llm.modeling.model_wrapper.aclgraph.aclgraph_model_wrapper_exp`` (MindIE-LLM 8b4871a).

The wrapper the TG talks to (aclgraph_model_wrapper_exp.py:25-289). Its constructor builds
``ModelRunnerExp`` from the service's model config -- ``max_batch_size``, ``max_seq_len`` and
``block_size`` default to -1 here, so the service must provide them -- and loads the weights;
``ModelInfo`` then announces the cache geometry. ``prepare_model_inputs`` copies ``input_ids`` and
``position_ids`` to the device as int64 and lets the runner build the forward context.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from mindie_llm.modeling.model_wrapper.model_info import ModelInfo
from mindie_llm.modeling.model_wrapper.wrapper import ModelWrapper
from mindie_llm.runtime.model_runner.forward_context_exp import ForwardContext
from mindie_llm.runtime.model_runner.model_runner_exp import ModelRunnerExp
from mindie_llm.runtime.utils.distributed import get_parallel_info_manager
from mindie_llm.runtime.utils.distributed.parallel_info_manager import ParallelType
from mindie_llm.text_generator.utils.model_input import ModelInput
from mindie_llm.utils.log.logging import logger


class AclGraphModelWrapperExp(ModelWrapper):
    def __init__(self, rank: int, local_rank: int, world_size: int, npu_device_id: int, model_id: str, **kwargs: Any) -> None:
        self.model_runner = ModelRunnerExp(
            model_name_or_path=model_id, rank=rank, local_rank=local_rank, npu_id=npu_device_id, world_size=world_size,
            trust_remote_code=kwargs.get("trust_remote_code", False), load_tokenizer=kwargs.get("load_tokenizer", True),
            tokenizer_path=kwargs.get("tokenizer_path", None), max_position_embeddings=kwargs.get("max_position_embeddings"),
            num_speculative_tokens=kwargs.get("num_speculative_tokens"), max_batch_size=kwargs.get("max_batch_size", -1),
            models_dict=kwargs.get("models", None), tp=kwargs.get("tp", -1), dp=kwargs.get("dp", -1),
            cp=kwargs.get("cp", -1), moe_tp=kwargs.get("moe_tp", -1), moe_ep=kwargs.get("moe_ep", -1),
            role=kwargs.get("role", "standard"), max_seq_len=kwargs.get("max_seq_len", -1),
            block_size=kwargs.get("block_size", -1), sampler_config=kwargs.get("sampler_config", None),
            distributed_enable=kwargs.get("distributed_enable", False))
        self.config = self.model_runner.config
        self.config_dict = self.model_runner.config_dict
        self.tokenizer = self.model_runner.tokenizer
        self.device = self.model_runner.device
        self.rank = rank
        self.mapping = get_parallel_info_manager()
        self.dp_size = self.mapping.get(ParallelType.ATTN_DP).group_size
        self.sp_size = self.mapping.get(ParallelType.ATTN_INNER_SP).group_size
        self.cp_size = self.mapping.get(ParallelType.ATTN_CP).group_size
        self.model_runner.load_weights()
        runner = self.model_runner
        self.model_info = ModelInfo(
            self.device, runner.kv_cache_dtype, torch.tensor([], dtype=runner.kv_cache_dtype).element_size(),
            runner.num_layers, runner.num_kv_heads, runner.head_size, k_head_size=runner.k_head_size,
            v_head_size=runner.v_head_size, enable_nz=runner.enable_nz, kvcache_quant_layers=runner.kvcache_quant_layers,
            index_head_dim=runner.index_head_dim, num_index_heads=runner.num_index_heads)
        self.max_position_embeddings = runner.max_position_embeddings
        self.adapter_manager = runner.adapter_manager
        self.model = runner.model
        self.is_multimodal = getattr(self.model, "is_multimodal", False)

    def forward(self, model_inputs: ModelInput, npu_cache: Any = None, **kwargs: Any) -> Any:
        model_inputs, kwargs = self.prepare_model_inputs(model_inputs, **kwargs)
        return self.forward_from_model_inputs(npu_cache, model_inputs.input_ids, model_inputs.position_ids,
                                              model_inputs.forward_context, **kwargs)

    def prepare_model_inputs(self, model_inputs: ModelInput, **kwargs: Any) -> tuple[ModelInput, dict[str, Any]]:
        """Host-to-device copies, then the runner's forward context (:146-209)."""
        model_inputs.input_ids = torch.tensor(model_inputs.input_ids, dtype=torch.int64, device=self.device)
        model_inputs.position_ids = torch.tensor(model_inputs.position_ids, dtype=torch.int64, device=self.device)
        model_inputs.block_tables_array = model_inputs.block_tables
        if kwargs.get("q_lens") is not None:
            model_inputs.q_lens = torch.tensor(kwargs["q_lens"]).to(self.device)
            kwargs["q_lens"] = model_inputs.q_lens
        for key in ("mtp_logits_gather_indices", "shard_effective_token_indices", "lm_head_local_dp", "sub_model_inputs",
                    "hidden_states"):
            if kwargs.get(key) is not None:
                raise NotImplementedError(f"not modelled: {key} (MTP / DP inputs)")
        forward_context = self.model_runner.build_forward_context(model_inputs, **kwargs)
        model_inputs.input_lengths = forward_context.attn_metadata.seq_lens
        model_inputs.forward_context = forward_context
        return model_inputs, kwargs

    def forward_from_model_inputs(self, npu_cache: Any = None, input_ids: torch.Tensor | None = None,
                                  position_ids: torch.Tensor | None = None, forward_context: ForwardContext | None = None,
                                  **kwargs: Any) -> Any:
        try:
            return self.model_runner.forward(npu_cache, input_ids, position_ids, forward_context, **kwargs)
        except Exception as error:
            logger.error(f"Error in `forward_tensor`: {error}")
            raise

    def generate_position_ids(self, input_ids: np.ndarray) -> Iterable:
        return self.model_runner.generate_position_ids(input_ids)

    def make_context(self, conversation: list[dict[str, str]], **kwargs: Any) -> Any:
        return self.model_runner.input_builder.make_context(self.rank, conversation, **kwargs)

    def resume_hccl_comm(self) -> None:
        raise NotImplementedError
