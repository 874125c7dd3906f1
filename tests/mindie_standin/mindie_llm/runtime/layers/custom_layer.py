"""Stand-in for ``mindie_llm.runtime.layers.custom_layer`` (MindIE-LLM 8b4871a, runtime/layers/custom_layer.py:16-31)."""

from __future__ import annotations

from typing import Any

from torch import nn


class CustomLayer(nn.Module):
    """Base of MindIE's own layers; its forward must be overridden."""

    def __init__(self) -> None:
        super().__init__()

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("`forward` function is not defined in the `CustomLayer` class.")
