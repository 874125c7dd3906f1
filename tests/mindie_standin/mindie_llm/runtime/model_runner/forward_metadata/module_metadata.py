"""Stand-in for ``mindie_llm.runtime.model_runner.forward_metadata.module_metadata``.

MindIE-LLM 8b4871a, forward_metadata/module_metadata.py:17-114.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass, fields
from typing import Any

import torch


@dataclass
class ModuleMetadata:
    """The interface every per-step metadata block offers the forward context."""

    @staticmethod
    @abstractmethod
    def from_model_input(model_input: Any) -> ModuleMetadata:
        """Build from the TG's ``ModelInput``."""

    @staticmethod
    @abstractmethod
    def is_enabled() -> bool:
        """Whether this metadata is in use."""

    @staticmethod
    @abstractmethod
    def register_buffer(max_num_token: int, device: torch.device) -> None:
        """Create the static buffers graph mode reads."""

    @classmethod
    def from_dict(cls, dict_data: dict[str, Any]) -> ModuleMetadata:
        names = {item.name for item in fields(cls)}
        return cls(**{k: v for k, v in dict_data.items() if k in names})

    @abstractmethod
    def to_device(self, device: torch.device) -> None:
        """Move host data to the device (eager inputs)."""

    @abstractmethod
    def copy(self, num_actual_tokens: int, num_tokens: int) -> None:
        """Copy the step's values into the static buffers and point at them (padded decode)."""

    def record_stream(self, stream: Any) -> None:
        def record(obj: Any) -> None:
            if isinstance(obj, torch.Tensor) and obj.device.type == "npu":
                obj.record_stream(stream)
            elif isinstance(obj, (list, tuple)):
                for item in obj:
                    record(item)
            elif isinstance(obj, dict):
                for item in obj.values():
                    record(item)

        for value in self.__dict__.values():
            record(value)
