"""Stand-in for ``mindie_llm.runtime.model_runner.input_buffer`` (MindIE-LLM 8b4871a, model_runner/input_buffer.py:17-77).

The static tensors graph capture records by address: ``input_ids``, ``position_ids``,
``seq_lens``, ``block_tables``, ``slot_mapping``, ``last_hidden_states``. A key registers once per
process; registering it again is skipped with a warning (main and draft model share buffers).
"""

from __future__ import annotations

import torch
from mindie_llm.runtime.utils.singleton import Singleton
from mindie_llm.utils.log.logging import logger


class InputBuffer(Singleton):
    def __init__(self) -> None:
        if hasattr(self, "_initialized"):
            return
        self._buffers: dict[str, torch.Tensor] = {}
        self._initialized = True

    def get(self, key: str) -> torch.Tensor:
        return self._buffers[key]

    def register(self, key: str, tensor: torch.Tensor) -> None:
        if key in self._buffers:
            logger.warning(f"Buffer '{key}' already registered, skip to update it.")
            return
        self._buffers[key] = tensor

    def _record_input_buffer_addresses(self) -> list[int]:
        return [value.data_ptr() for value in self._buffers.values() if torch.is_tensor(value)]


input_buffer = InputBuffer()
