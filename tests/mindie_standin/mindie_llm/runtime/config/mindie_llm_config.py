"""Stand-in for ``mindie_llm.runtime.config.mindie_llm_config`` (MindIE-LLM 8b4871a, runtime/config/mindie_llm_config.py).

``MindIELLMConfig.__post_init__`` overwrites whatever ``quant_config`` it was given with the result
of looking for msModelSlim description files among the ``*.json`` of the model directory (:78-138):
none -> None (a warning), several -> ValueError, one -> a ``QuantizationConfig`` (not modelled here:
the stand-in raises, as the adapter serves floating-point weights only).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mindie_llm.runtime.config.configuration_utils import LLMConfig
from mindie_llm.runtime.config.huggingface_config import GenerationConfig, HuggingFaceConfig
from mindie_llm.utils.log.logging import logger

# QuantizationConfig.get_config_filenames() (layers/quantization/ms_model_slim/quantization_config.py:52-61).
QUANT_CONFIG_FILENAMES = ("quant_model_description.json", "quant_model_description_w8a8.json",
                          "quant_model_description_w8a8_mix.json", "quant_model_description_w8a8s.json",
                          "quant_model_description_w8a8sc.json", "quant_model_description_w8a8_dynamic.json",
                          "quant_model_description_w8a16.json")


@dataclass
class LoraModelConfig:
    max_loras: int = field(default=0)
    max_lora_rank: int = field(default=0)

    def __post_init__(self) -> None:
        for name in ("max_loras", "max_lora_rank"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")


@dataclass
class SpeculativeConfig:
    num_speculative_tokens: int = field(default=0)


@dataclass
class MindIELLMConfig:
    model_name_or_path: str
    hf_config: HuggingFaceConfig
    llm_config: LLMConfig
    generation_config: GenerationConfig
    quant_config: Any | None = None
    lora_model_config: LoraModelConfig | None = None
    speculative_config: SpeculativeConfig | None = None

    def __post_init__(self) -> None:
        self.quant_config = self._init_quant_config()

    def _init_quant_config(self) -> Any | None:
        """Files whose path ends with one of the description names (W8A8SC part directories not modelled)."""
        directory = Path(self.model_name_or_path)
        candidates = [str(p) for p in directory.glob("*.json")] if directory.is_dir() else []
        found = [path for name in QUANT_CONFIG_FILENAMES for path in candidates if path.endswith(name)]
        if not found:
            logger.warning("Cannot find the config file for `QuantizationConfig`. "
                           "Try to load weights in the floating points instead.")
            return None
        if len(found) > 1:
            raise ValueError(f"Found multiple config files for `QuantizationConfig`: {found}")
        raise NotImplementedError(f"not modelled: quantized weights ({found[0]})")
