"""``ToyLlmRouter``: MindIE's base router finds everything by the naming rule."""

from __future__ import annotations

from dataclasses import dataclass

from mindie_llm.runtime.models.base.router import BaseRouter


@dataclass
class ToyLlmRouter(BaseRouter):
    """Nothing to override."""
