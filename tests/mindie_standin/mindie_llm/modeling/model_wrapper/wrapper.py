"""Stand-in for ``mindie_llm.modeling.model_wrapper.wrapper`` (MindIE-LLM 8b4871a, modeling/model_wrapper/wrapper.py:16-23)."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterable
from typing import Any

import numpy as np


class ModelWrapper:
    @abstractmethod
    def forward(self, model_inputs: Any, npu_cache: Any = None, **kwargs: Any) -> Any:
        """One step of the model on the TG's inputs."""

    @abstractmethod
    def generate_position_ids(self, input_ids: np.ndarray) -> Iterable:
        """Prompt positions for one sequence."""
