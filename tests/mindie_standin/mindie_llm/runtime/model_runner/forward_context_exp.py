"""Stand-in for ``mindie_llm.runtime.model_runner.forward_context_exp`` (MindIE-LLM 8b4871a, forward_context_exp.py).

The forward context ``ModelRunnerExp`` publishes before every model call (and the only one models
read on master: the older ``forward_context`` module has no getter there). Facts modelled:

- ``BatchDescriptor(num_tokens, is_flash_comm_enabled=False)`` is the graph key (:59-68);
- ``create_forward_context`` (:202-241) takes the metadata class from the *first registered*
  Attention's backend (so at least one ``Attention`` must exist), ``num_actual_tokens`` =
  ``len(input_ids)``, and ``lm_head_indices`` = the TG's ``prefill_head_indices`` or, in decode,
  ``arange(len(input_ids))`` over the actual tokens only (never the padded size);
- ``to_device`` turns ``lm_head_indices`` into an int64 device tensor (:125-135);
- ``register`` creates the attention metadata's static buffers plus MTP's ``last_hidden_states`` (:103-123);
- ``copy`` forwards padding to the attention, MTP and DP metadata (:159-171).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from mindie_llm.runtime.layers.attention import get_global_attn_dict
from mindie_llm.runtime.model_runner.forward_metadata.attn_metadata import AttentionMetadata
from mindie_llm.runtime.model_runner.forward_metadata.dp_metadata import DPMetadata
from mindie_llm.runtime.model_runner.forward_metadata.module_metadata import ModuleMetadata
from mindie_llm.runtime.model_runner.forward_metadata.mtp_metadata import MtpMetadata
from mindie_llm.runtime.utils.distributed import get_parallel_info_manager
from mindie_llm.runtime.utils.distributed.parallel_info_manager import ParallelType

__all__ = ["AttentionMetadata", "BatchDescriptor", "ForwardContext", "create_forward_context", "get_forward_context",
           "set_forward_context"]

_MC2_TOKEN_CAPACITY = None
MAX_MC2_OPERATOR_CAPACITY = 512


def set_mc2_token_capacity(max_num_reqs: int, uniform_decode_query_len: int) -> None:
    """Tokens one device handles per step, capped at 512 (:33-52); CP and flash-comm divide it."""
    manager = get_parallel_info_manager()
    tokens = max_num_reqs * uniform_decode_query_len
    if manager.get(ParallelType.ATTN_CP).is_enabled():
        cp_size = manager.get(ParallelType.ATTN_CP).group_size
        tokens = (tokens + cp_size - 1) // cp_size
    if manager.get(ParallelType.ATTN_DP).is_enabled() and manager.get(ParallelType.ATTN_TP).is_enabled():
        tp_size = manager.get(ParallelType.ATTN_TP).group_size
        tokens = (tokens + tp_size - 1) // tp_size
    global _MC2_TOKEN_CAPACITY
    _MC2_TOKEN_CAPACITY = min(tokens, MAX_MC2_OPERATOR_CAPACITY)


def get_mc2_token_capacity() -> int | None:
    return _MC2_TOKEN_CAPACITY


class BatchDescriptor(NamedTuple):
    num_tokens: int
    is_flash_comm_enabled: bool = False


def _metadata_cls() -> Any:
    """Stand-in helper: the metadata class of the first registered Attention's backend (:118-121, :213-216)."""
    attns = get_global_attn_dict()
    return attns[next(iter(attns))].get_attn_backend().get_builder_cls().get_metadata_cls()


@dataclass
class ForwardContext:
    is_prefill: bool | None = None
    lm_head_indices: torch.Tensor | None = None
    attn_metadata: AttentionMetadata | None = None
    attn_metadata_dict: dict[str, AttentionMetadata] | None = None
    dp_metadata: DPMetadata | None = None
    capturing: bool = False
    num_actual_tokens: int = 0
    batch_descriptor: BatchDescriptor | None = None
    mc2_mask: torch.Tensor | None = None
    mtp_metadata: MtpMetadata = None
    sub_forward_context = None

    @staticmethod
    def register(max_num_token: int, device: torch.device, hf_config: Any, max_block_per_seq: int) -> None:
        _metadata_cls().register_buffer(max_num_token, device, max_block_per_seq)
        MtpMetadata.register_buffer(max_num_token, device, hf_config)

    def to_device(self, device: torch.device) -> None:
        if self.attn_metadata is not None:
            self.attn_metadata.to_device(device)
        if self.dp_metadata is not None:
            self.dp_metadata.to_device(device)
        self.lm_head_indices = torch.tensor(self.lm_head_indices, dtype=torch.int64, device=device)

    def record_stream(self, stream: Any) -> None:
        for value in self.__dict__.values():
            if isinstance(value, ModuleMetadata):
                value.record_stream(stream)

    def copy(self, num_actual_tokens: int, num_tokens: int) -> None:
        self.attn_metadata.copy(num_actual_tokens, num_tokens)
        self.mtp_metadata.copy(num_actual_tokens, num_tokens)
        if hasattr(self.attn_metadata, "mc2_mask"):
            self.mc2_mask = self.attn_metadata.mc2_mask
        if self.dp_metadata is not None:
            self.dp_metadata.copy(num_actual_tokens, num_tokens)


_forward_context: ForwardContext | None = None


def get_forward_context() -> ForwardContext:
    if _forward_context is None:
        raise RuntimeError("Forward context is not set. Please use `set_forward_context` to set the forward context.")
    return _forward_context


def set_forward_context(context: ForwardContext) -> None:
    global _forward_context
    _forward_context = context


def create_forward_context(model_inputs: Any, mask: torch.Tensor, num_speculative_tokens: int = 0) -> ForwardContext:
    attn_metadata = _metadata_cls().from_model_input(model_inputs, mask, num_speculative_tokens)
    num_actual_tokens = len(model_inputs.input_ids)
    batch_descriptor = BatchDescriptor(num_actual_tokens, get_parallel_info_manager().get(ParallelType.ATTN_TP).is_enabled())
    if model_inputs.prefill_head_indices is not None:
        lm_head_indices = model_inputs.prefill_head_indices
    else:
        lm_head_indices = torch.arange(model_inputs.input_ids.shape[0], device=model_inputs.input_ids.device)
    return ForwardContext(is_prefill=model_inputs.is_prefill, lm_head_indices=lm_head_indices, attn_metadata=attn_metadata,
                          dp_metadata=DPMetadata.from_model_input(model_inputs), num_actual_tokens=num_actual_tokens,
                          batch_descriptor=batch_descriptor, mtp_metadata=MtpMetadata.from_model_input(model_inputs))
