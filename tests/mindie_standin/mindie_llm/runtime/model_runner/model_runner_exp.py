"""Stand-in for ``mindie_llm.runtime.model_runner.model_runner_exp`` (MindIE-LLM 8b4871a, model_runner/model_runner_exp.py).

The runner of MindIE's torch backend. What the adapter meets, in MindIE's order:

- ``__init__`` (:97-217): the router from ``get_router_ins`` (config, tokenizer, input builder,
  llm_config), ``init_distributed``, ``MindIELLMConfig`` (which rediscovers quantization files),
  ``max_block_per_seq = ceil(max_seq_len / block_size) + 5``, the 2048x2048 int8 ``attn_mask`` every
  metadata gets, and ``_is_aclgraph_enabled = role != "prefill"`` -- the only switch; there is no
  eager option for a standard or decode instance;
- ``load_weights`` (:219-260): ``max_seq_len`` must not exceed ``rope_scaling.max_position_embeddings``;
  the model is built as ``model_cls(mindie_llm_config)`` under the checkpoint dtype and ``with``
  the device, filled by ``DefaultModelLoader`` (which reads ``model.config``), then wrapped in
  ``AclGraphBackend`` with ``max_num_token`` = the largest capture size;
- ``forward`` (:272-331): rebind caches when the first pair changed (the first time also creating
  the static buffers), pad decode batches into the static buffers, publish the context, call the
  model positionally ``model(input_ids, position_ids)``, then always eagerly ``compute_logits``;
- ``compile`` (:262-270): bind the pool's caches, then capture every size, largest first, each
  with dummy inputs: ids 0, positions 0, slots -1, seq_lens 0, block-table rows 0, host lengths [0]*n.

Not modelled: CPU binding, NPU SoC info and HBM logging, the async sampler, MTP/DP/CP branches
(each raises or is documented where it would branch). ``torch.npu.current_stream()`` is the emulated
one; the mask is moved with ``.to(device)`` instead of ``.npu()``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from mindie_llm._standin import npu
from mindie_llm.runtime.compilation.aclgraph_backend import AclGraphBackend, set_aclgraph_capturing_enabled
from mindie_llm.runtime.config.load_config import LoadConfig
from mindie_llm.runtime.config.mindie_llm_config import MindIELLMConfig, SpeculativeConfig
from mindie_llm.runtime.layers.attention import get_global_attn_dict
from mindie_llm.runtime.model_runner.forward_context_exp import (
    BatchDescriptor,
    ForwardContext,
    create_forward_context,
    set_forward_context,
    set_mc2_token_capacity,
)
from mindie_llm.runtime.model_runner.forward_metadata.attn_metadata import build_layerwise_attn_metadata
from mindie_llm.runtime.model_runner.input_buffer import input_buffer
from mindie_llm.runtime.model_runner.spec_worker import auto_speculative_method_router, speculative_worker_selector
from mindie_llm.runtime.models import get_router_ins
from mindie_llm.runtime.utils.distributed import get_parallel_info_manager, init_distributed
from mindie_llm.runtime.utils.distributed.parallel_info_manager import ParallelType
from mindie_llm.runtime.utils.distributed.utils import set_device
from mindie_llm.runtime.utils.loader.default_model_loader import DefaultModelLoader
from mindie_llm.runtime.utils.torch_utils import set_default_torch_dtype
from mindie_llm.text_generator.utils.model_input import ModelInput
from mindie_llm.utils.env import ENV
from mindie_llm.utils.log.logging import logger


class KVCacheInfo:
    """Identity and shape of the first cache pair last bound (model_runner_exp.py:53-83)."""

    kcache_id: int | None = None
    vcache_id: int | None = None
    kcache_shape: torch.Size | None = None
    vcache_shape: torch.Size | None = None

    def check_diff(self, kv_caches: list) -> bool:
        """True when nothing was recorded yet or the first K/V tensors are other objects or shapes."""
        key, value = kv_caches[0][0], kv_caches[0][1]
        key_changed = not self.kcache_id or self.kcache_id != id(key) or self.kcache_shape != key.shape
        value_changed = not self.vcache_id or self.vcache_id != id(value) or self.vcache_shape != value.shape
        return key_changed or value_changed


@auto_speculative_method_router(selector_fn=speculative_worker_selector)
class ModelRunnerExp:
    _is_warmup_completed = False

    def __init__(self, model_name_or_path: str, rank: int, world_size: int, npu_id: int | None = None,
                 local_rank: int | None = None, load_tokenizer: bool = True, max_position_embeddings: int | None = None,
                 tokenizer_path: str | None = None, llm_config_path: str | None = None, models_dict: dict | None = None,
                 **kwargs: Any) -> None:
        self._model_name_or_path = model_name_or_path
        self.num_speculative_tokens = kwargs.get("num_speculative_tokens", 0)
        self._max_batch_size = kwargs.get("max_batch_size", -1) * (self.num_speculative_tokens + 1)
        self._max_num_token = self._max_batch_size
        local_rank = local_rank if local_rank is not None else rank
        self.device = set_device(rank, npu_id if npu_id is not None else local_rank)
        self._max_seq_len = kwargs.get("max_seq_len", -1)
        self._block_size = kwargs.get("block_size", 128)
        if self._max_seq_len <= 0:
            raise ValueError(f"max_seq_len must be specified and greater than 0, but got {self._max_seq_len}")
        if self._block_size <= 0:
            raise ValueError(f"block_size must be greater than 0, but got {self._block_size}")
        # 5 extra blocks per sequence for DP, asynchronous scheduling and MTP (:138-139).
        self._max_block_per_seq = (self._max_seq_len + self._block_size - 1) // self._block_size + 5
        self.is_draft_model = kwargs.get("is_draft_model", False)

        load_config = LoadConfig.from_dict({
            "model_name_or_path": model_name_or_path, "load_tokenizer": load_tokenizer,
            "max_position_embeddings": max_position_embeddings, "tokenizer_path": tokenizer_path,
            "trust_remote_code": kwargs.get("trust_remote_code", False), "llm_config_path": llm_config_path,
            "models_dict": models_dict,
        })
        router_ins = get_router_ins(load_config)
        self._model_cls = router_ins.draft_cls if self.is_draft_model else router_ins.model_cls
        self.config = router_ins.config
        self.kv_cache_dtype = self.config.torch_dtype
        self.tokenizer = router_ins.tokenizer
        self.input_builder = router_ins.input_builder
        self.config_dict = router_ins.config_dict
        self.llm_config = router_ins.llm_config
        self.enable_nz = False
        init_distributed(rank, world_size, local_rank, llm_config=self.llm_config, server_config=kwargs)
        self.head_size = self.config.head_dim
        self.num_heads = self.config.get_num_attention_heads_per_rank()
        self.num_kv_heads = self.config.get_num_kv_heads_per_rank()
        self.num_layers = self.config.num_hidden_layers
        self.k_head_size = self.head_size
        self.v_head_size = self.head_size
        self.kvcache_quant_layers: list = []
        self.index_head_dim = None
        self.num_index_heads = None
        self.max_position_embeddings = self.config.max_position_embeddings
        self.adapter_manager = None
        self.lora_adapter = None
        self.model: Any = None
        self.attn_mask = None
        self._mindie_llm_config = MindIELLMConfig(self._model_name_or_path, self.config, self.llm_config,
                                                  router_ins.generation_config,
                                                  speculative_config=SpeculativeConfig(self.num_speculative_tokens))
        self._mask = torch.triu(torch.ones(2048, 2048), diagonal=1).to(torch.int8).to(self.device)
        self._kv_cache_info = KVCacheInfo()
        self.role = kwargs.get("role", "standard")
        self._is_aclgraph_enabled = self.role != "prefill"  # False: eager, True: ACL graphs (:207-210)
        if ENV.async_inference:
            raise NotImplementedError("not modelled: asynchronous scheduling (the runner's own Sampler)")
        set_mc2_token_capacity(self._max_batch_size, self.num_speculative_tokens + 1)

    def load_weights(self) -> None:
        if self._max_seq_len > self._mindie_llm_config.hf_config.rope_scaling.max_position_embeddings:
            message = ("`max_seq_len` cannot be larger than `max_position_embeddings` "
                       "or `original_max_position_embeddings`*`scaling_factor` when scaling.")
            logger.error(message)
            raise ValueError(message)
        with set_default_torch_dtype(self.config.torch_dtype), self.device:
            self.model = self._model_cls(self._mindie_llm_config)
        DefaultModelLoader().load_weights(self.model, self._model_name_or_path)
        if hasattr(self.model, "kv_lora_rank") and hasattr(self.model, "qk_rope_head_dim"):
            raise NotImplementedError("not modelled: MLA caches (kv_lora_rank / qk_rope_head_dim)")
        self.attn_mask = getattr(self.model, "attn_mask", None)
        if self._is_aclgraph_enabled:
            self.model = AclGraphBackend(self.model, self._max_batch_size)
            self._max_num_token = self.model.capture_sizes[-1]
            logger.info(f"AclGraph is enabled. Graph batch sizes contains {self.model.capture_sizes}.")

    def compile(self, kv_caches: list) -> None:
        self._bind_kv_cache(kv_caches)
        if self._is_aclgraph_enabled:
            self._warm_up_and_compile()

    def forward(self, kv_caches: list, input_ids: torch.Tensor, position_ids: torch.Tensor,
                forward_context: ForwardContext, mtp_step: int = 0, **kwargs: Any) -> torch.Tensor | tuple:
        if self._kv_cache_info.check_diff(kv_caches):
            self._bind_kv_cache(kv_caches)
            if not self.is_draft_model and not self._is_warmup_completed:
                self._init_buffer()
                self._is_warmup_completed = True
        if self._is_aclgraph_enabled and not forward_context.is_prefill and mtp_step < 1:
            input_ids, position_ids, forward_context = self._padding_forward_context(input_ids, position_ids,
                                                                                     forward_context)
        forward_context.attn_metadata_dict = build_layerwise_attn_metadata(forward_context.attn_metadata)
        npu().current_stream().synchronize()
        set_forward_context(forward_context)

        hidden_states = self.model(input_ids, position_ids)
        hidden_states = self.model.maybe_gather_and_unpad_for_flashcomm(hidden_states)
        hidden_states = self.model.maybe_pad_and_gather_cross_dp_and_unpad(hidden_states)
        logits = self.model.compute_logits(hidden_states)
        if self.num_speculative_tokens > 0:
            return logits, hidden_states
        return logits

    def build_forward_context(self, model_inputs: ModelInput, **kwargs: Any) -> ForwardContext:
        """The step's context with its padded size; host data moved to the device (:333-358)."""
        forward_context = create_forward_context(model_inputs, self._mask, self.num_speculative_tokens)
        if get_parallel_info_manager().get(ParallelType.ATTN_DP).is_enabled():
            raise NotImplementedError("not modelled: data parallelism (padding to max_tokens_across_dp_cpu)")
        if self._is_aclgraph_enabled:
            num_tokens = self.model.get_padded_graph_size(forward_context.num_actual_tokens)
        else:
            num_tokens = forward_context.num_actual_tokens
        forward_context.batch_descriptor = BatchDescriptor(num_tokens, forward_context.batch_descriptor.is_flash_comm_enabled)
        forward_context.attn_metadata.num_tokens = num_tokens
        forward_context.to_device(self.device)
        return forward_context

    def generate_position_ids(self, input_ids: np.ndarray) -> Any:
        return self.input_builder.generate_position_ids(input_ids)

    def set_eager_mode_with_padding(self, is_eager_mode_with_padding: bool) -> None:
        if self._is_aclgraph_enabled:
            self.model.set_eager_mode_with_padding(is_eager_mode_with_padding)

    def clear_internal_tensors(self) -> None:
        """Only meaningful for ATB graphs (:382-387)."""

    def _padding_forward_context(self, input_ids: torch.Tensor, position_ids: torch.Tensor,
                                 forward_context: ForwardContext) -> tuple[torch.Tensor, torch.Tensor, ForwardContext]:
        """Copy the step into the static buffers; only rows ``[:num_actual]`` are written (:389-425)."""
        num_actual_tokens = input_ids.shape[0]
        forward_context.num_actual_tokens = num_actual_tokens
        num_tokens = forward_context.batch_descriptor.num_tokens
        if num_tokens > self._max_num_token:
            logger.info(f"Current batch size {num_tokens} is larger than {self._max_num_token}, using eager mode.")
            return input_ids, position_ids, forward_context
        input_buffer.get("input_ids")[:num_actual_tokens].copy_(input_ids[:num_actual_tokens])
        input_buffer.get("position_ids")[:num_actual_tokens].copy_(position_ids[:num_actual_tokens])
        forward_context.attn_metadata.num_tokens = num_tokens
        input_ids = input_buffer.get("input_ids")[:num_tokens]
        position_ids = input_buffer.get("position_ids")[:num_tokens]
        forward_context.copy(num_actual_tokens, num_tokens)
        return input_ids, position_ids, forward_context

    def _init_buffer(self) -> None:
        ForwardContext.register(self._max_num_token, self.device, self._mindie_llm_config.hf_config, self._max_block_per_seq)
        input_buffer.register("input_ids", torch.zeros(self._max_num_token, dtype=torch.int32, device=self.device))
        input_buffer.register("position_ids", torch.zeros(self._max_num_token, dtype=torch.int64, device=self.device))

    def _warm_up_and_compile(self) -> None:
        set_aclgraph_capturing_enabled(True)
        for num_tokens in reversed(self.model.capture_sizes):
            self._dummy_run(num_tokens)
        set_aclgraph_capturing_enabled(False)

    def _dummy_run(self, num_tokens: int) -> None:
        if num_tokens > self._max_num_token:
            raise ValueError("Dummy run failed for capture batch size is larger than max input_len.")
        input_ids, position_ids = self._generate_dummy_inputs(num_tokens)
        self.model(input_ids, position_ids)

    def _generate_dummy_inputs(self, num_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Capture inputs are views of the static buffers, filled with inert values (:474-520)."""
        input_ids = input_buffer.get("input_ids")[:num_tokens].fill_(0)
        position_ids = input_buffer.get("position_ids")[:num_tokens].fill_(0)
        slot_mapping = input_buffer.get("slot_mapping")[:num_tokens].fill_(-1)
        seq_lens = input_buffer.get("seq_lens")[:num_tokens].fill_(0)
        block_tables = input_buffer.get("block_tables")[:num_tokens, :].fill_(0)
        seq_lens_list = seq_lens.cpu().tolist()
        model_inputs = ModelInput(
            is_prefill=False, input_ids=input_ids, position_ids=position_ids, block_tables=block_tables, slots=slot_mapping,
            context_length=seq_lens, max_seq_len=max(seq_lens_list), cached_context_length=[1], prefill_head_indices=None,
            q_lens=seq_lens,
            last_hidden_states=input_buffer.get("last_hidden_states")[:num_tokens, :] if self.is_draft_model else None)
        forward_context = create_forward_context(model_inputs, self._mask, self.num_speculative_tokens)
        forward_context.batch_descriptor = BatchDescriptor(
            num_tokens, get_parallel_info_manager().get(ParallelType.ATTN_TP).is_enabled())
        forward_context.attn_metadata.seq_lens_list = seq_lens_list
        if hasattr(forward_context.attn_metadata, "prepare_dummy_input"):
            forward_context.attn_metadata.prepare_dummy_input(num_tokens)
        forward_context.attn_metadata_dict = build_layerwise_attn_metadata(forward_context.attn_metadata)
        npu().current_stream().synchronize()
        set_forward_context(forward_context)
        return input_ids, position_ids

    def _bind_kv_cache(self, kv_caches: list) -> None:
        """Pair ``i`` goes to the ``i``-th registered Attention (:522-541): extra pairs are ignored,
        extra layers raise IndexError."""
        self._kv_cache_info.kcache_id = id(kv_caches[0][0])
        self._kv_cache_info.vcache_id = id(kv_caches[0][1])
        self._kv_cache_info.kcache_shape = kv_caches[0][0].shape
        self._kv_cache_info.vcache_shape = kv_caches[0][1].shape
        for i, layer in enumerate(get_global_attn_dict().values()):
            layer.key_cache = kv_caches[i][0]
            layer.value_cache = kv_caches[i][1]
