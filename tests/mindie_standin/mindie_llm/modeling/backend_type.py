"""Stand-in for ``mindie_llm.modeling.backend_type`` (MindIE-LLM 8b4871a, modeling/backend_type.py:13-22)."""

from __future__ import annotations

from enum import Enum


class BackendType(str, Enum):
    ATB = "atb"
    TORCH = "torch"

    @classmethod
    def from_string(cls, value: str, default: BackendType | None = None) -> BackendType:
        """Unknown strings give ``default``, or TORCH."""
        try:
            return cls(value)
        except ValueError:
            return default if default is not None else cls.TORCH
