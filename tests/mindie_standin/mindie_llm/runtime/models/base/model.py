"""Stand-in for ``mindie_llm.runtime.models.base.model`` (MindIE-LLM 8b4871a, models/base/model.py:24-136).

What a model gets from the base class: ``self.mindie_llm_config`` and ``self.model_descriptor``
-- **not** ``self.config``, which MindIE's weight loader nevertheless reads. The runner calls
``maybe_gather_and_unpad_for_flashcomm`` (reads ``batch_descriptor`` of the current forward
context) and ``maybe_pad_and_gather_cross_dp_and_unpad`` on every step's hidden states; both return
them unchanged on one NPU. The collective branches (flash-comm, CP, DP) are not modelled.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import torch
from mindie_llm.runtime.model_runner.forward_context_exp import get_forward_context
from mindie_llm.runtime.models.base.model_descriptor import ModelDescriptor
from mindie_llm.runtime.utils.distributed import get_parallel_info_manager
from mindie_llm.runtime.utils.distributed.parallel_info_manager import ParallelType
from torch import nn


class BaseModelForCausalLM(nn.Module):
    def __init__(self, mindie_llm_config: Any) -> None:
        super().__init__()
        self.mindie_llm_config = mindie_llm_config
        self.model_descriptor = self._get_model_descriptor_cls().from_config(mindie_llm_config)

    @staticmethod
    def maybe_gather_and_unpad_for_flashcomm(hidden_states: torch.Tensor) -> torch.Tensor:
        if not get_forward_context().batch_descriptor.is_flash_comm_enabled:
            return hidden_states
        raise NotImplementedError("not modelled: flash-comm all-gather")

    @staticmethod
    def maybe_all_gather_cp(hidden_states: torch.Tensor) -> torch.Tensor:
        if not get_parallel_info_manager().get(ParallelType.ATTN_CP).is_enabled():
            return hidden_states
        raise NotImplementedError("not modelled: context-parallel all-gather")

    @staticmethod
    def _get_model_descriptor_cls() -> type[ModelDescriptor]:
        return ModelDescriptor

    @abstractmethod
    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor, intermediate_tensors: torch.Tensor | None = None,
                inputs_embeds: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden states of every token (the runner passes ``input_ids, positions`` positionally)."""

    @abstractmethod
    def compute_logits(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """Logits, run eagerly after the graph replay."""

    def maybe_pad_and_gather_cross_dp_and_unpad(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if get_parallel_info_manager().is_distribution_enabled:
            return hidden_states
        if not get_parallel_info_manager().get(ParallelType.ATTN_DP).is_enabled():
            return hidden_states
        raise NotImplementedError("not modelled: data-parallel all-gather")

    def _maybe_pad_cross_dp(self, hidden_states: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("not modelled: data parallelism")

    def _maybe_unpad_cross_dp(self, hidden_states: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("not modelled: data parallelism")
