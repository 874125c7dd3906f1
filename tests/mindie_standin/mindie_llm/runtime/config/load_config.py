"""Stand-in for ``mindie_llm.runtime.config.load_config`` (MindIE-LLM 8b4871a, runtime/config/load_config.py:17-86).

Field order is MindIE's; ``from_dict`` drops unknown keys; an empty ``tokenizer_path`` becomes the
model path. ``validate`` (path standardisation, not called on the runner's path) is reduced to its
range checks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class LoadConfig:
    model_name_or_path: str
    max_position_embeddings: int | None = None
    trust_remote_code: bool = False
    load_tokenizer: bool = True
    tokenizer_path: str | None = None
    llm_config_path: str | None = None
    models_dict: dict[str, Any] | None = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.tokenizer_path:
            self.tokenizer_path = self.model_name_or_path

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any]) -> LoadConfig:
        return cls(**{k: v for k, v in config_dict.items() if k in cls.__dataclass_fields__})

    def validate(self) -> None:
        if self.max_position_embeddings is not None and self.max_position_embeddings <= 0:
            raise ValueError(f"max_position_embeddings must be a positive integer, current value: "
                             f"{self.max_position_embeddings}")
        if self.models_dict is not None and len(self.models_dict) > 4096:
            raise ValueError(f"The length of plugin_params ({len(self.models_dict)}) is too long, it should be within (0, 4096]")
