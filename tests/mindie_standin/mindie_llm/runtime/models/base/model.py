"""Stand-in for ``mindie_llm.runtime.models.base.model`` (no model descriptor)."""

from abc import abstractmethod

import torch
from torch import nn


class BaseModelForCausalLM(nn.Module):
    def __init__(self, mindie_llm_config):
        super().__init__()

    @abstractmethod
    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor,
                intermediate_tensors: torch.Tensor | None = None, inputs_embeds: torch.Tensor | None = None):
        """Compute hidden states."""

    @abstractmethod
    def compute_logits(self, hidden_states: torch.Tensor):
        """Compute logits."""
