"""Stand-in for ``mindie_llm.runtime.config.mindie_llm_config`` (no quantization discovery)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .huggingface_config import GenerationConfig, HuggingFaceConfig


@dataclass
class MindIELLMConfig:
    model_name_or_path: str
    hf_config: HuggingFaceConfig
    llm_config: Any
    generation_config: GenerationConfig
    quant_config: Any = None
    lora_model_config: Any = None
