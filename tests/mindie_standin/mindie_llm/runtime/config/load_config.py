"""Stand-in for ``mindie_llm.runtime.config.load_config``."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any


@dataclass
class LoadConfig:
    model_name_or_path: str
    load_tokenizer: bool = True
    max_position_embeddings: int | None = None
    tokenizer_path: str | None = None
    trust_remote_code: bool = False
    llm_config_path: str | None = None
    models_dict: dict | None = None

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any]) -> LoadConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in config_dict.items() if k in names})
