"""Stand-in for ``mindie_llm.runtime.model_runner.forward_metadata.mtp_metadata`` (MindIE-LLM 8b4871a, mtp_metadata.py:19-40)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from mindie_llm.runtime.model_runner.forward_metadata.module_metadata import ModuleMetadata
from mindie_llm.runtime.model_runner.input_buffer import input_buffer


@dataclass
class MtpMetadata(ModuleMetadata):
    last_hidden_states: torch.Tensor = None
    draft_token_indices = None

    @staticmethod
    def from_model_input(model_inputs: Any) -> MtpMetadata:
        return MtpMetadata(last_hidden_states=model_inputs.last_hidden_states)

    @staticmethod
    def register_buffer(max_num_token: int, device: torch.device, hf_config: Any) -> None:
        """A ``[max_num_token, hidden_size]`` zeros buffer in the checkpoint dtype, registered for every model."""
        input_buffer.register("last_hidden_states",
                              torch.zeros((max_num_token, hf_config.hidden_size), dtype=hf_config.torch_dtype, device=device))

    def copy(self, num_actual_tokens: int, num_tokens: int) -> None:
        if self.last_hidden_states is not None:
            buffer = input_buffer.get("last_hidden_states")
            buffer[:num_actual_tokens, :].copy_(self.last_hidden_states[:num_actual_tokens, :])
            self.last_hidden_states = buffer[:num_tokens, :]
