"""Stand-in for ``mindie_llm.runtime.utils.singleton`` (MindIE-LLM 8b4871a, runtime/utils/singleton.py:12-18)."""

from __future__ import annotations

from typing import Any


class Singleton:
    """One instance per class for the life of the process (``InputBuffer`` relies on it)."""

    _instances: dict[type, Any] = {}

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        if cls not in cls._instances:
            cls._instances[cls] = super().__new__(cls)
        return cls._instances[cls]
