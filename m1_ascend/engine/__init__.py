"""Serving engine: scheduler, block manager, model runner and sampler over the paged KV cache.

The public names load on first use, so importing a submodule (e.g. ``memory_plan``) stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "LLM": "llm",
    "LLMEngine": "llm_engine",
    "SamplingParams": "sampling_params",
    "RequestOutput": "outputs",
    "RequestRejected": "errors",
    "StepFailed": "errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
