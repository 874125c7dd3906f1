"""Stand-in for ``mindie_llm.runtime.models.base.model_descriptor`` (MindIE-LLM 8b4871a, model_descriptor.py:17-45)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class ModelDescriptor:
    """Which optional features a model supports; FlashComm is off for every model built by the base class."""

    is_flashcomm_supported: bool = False

    def __post_init__(self) -> None:
        self.validate()

    @classmethod
    def from_config(cls, mindie_llm_config: Any) -> ModelDescriptor:
        return cls(is_flashcomm_supported=False)

    def validate(self) -> None:
        if not isinstance(self.is_flashcomm_supported, bool):
            raise ValueError("is_flashcomm_supported must be a bool")
