"""Stand-in for ``mindie_llm.runtime.config.huggingface_config`` (validators reduced to range checks)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from transformers.configuration_utils import PretrainedConfig


@dataclass
class GenerationConfig:
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | list[int | list[int]] = None

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any]) -> GenerationConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in config_dict.items() if k in names})

    def validate(self, vocab_size: int) -> None:
        ids = [self.pad_token_id, self.bos_token_id]
        ids += self.eos_token_id if isinstance(self.eos_token_id, list) else [self.eos_token_id]
        if any(i is not None and not -1 <= i < vocab_size for i in ids):
            raise ValueError("token id out of the vocabulary")


@dataclass
class BaseRopeScaling:
    rope_theta: float = field(default=1000000.0)
    max_position_embeddings: int | None = field(default=None)

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any], rope_theta: float = 1000000.0,
                  max_position_embeddings: int | None = None) -> BaseRopeScaling:
        return cls(rope_theta=rope_theta, max_position_embeddings=max_position_embeddings)


@dataclass
class HuggingFaceConfig(PretrainedConfig):
    vocab_size: int | None = field(default=None)
    hidden_size: int | None = field(default=None)
    intermediate_size: int | None = field(default=None)
    num_attention_heads: int | None = field(default=None)
    num_key_value_heads: int | None = field(default=None)
    head_dim: int | None = field(default=None)
    rms_norm_eps: float | None = field(default=None)
    num_hidden_layers: int | None = field(default=None)
    max_position_embeddings: int | None = field(default=None)
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | list[int | list[int]] = None
    rope_scaling: BaseRopeScaling | None = None

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        rope_scaling_dict = kwargs.get("rope_scaling", None)
        rope_theta = kwargs.get("rope_theta", 1000000.0)
        max_position_embeddings = kwargs.get("max_position_embeddings", None)
        if hasattr(self, "_create_rope_scaling"):
            self.rope_scaling = self._create_rope_scaling(rope_scaling_dict or {}, rope_theta, max_position_embeddings)
        else:
            self.rope_scaling = BaseRopeScaling.from_dict(rope_scaling_dict, rope_theta=rope_theta,
                                                          max_position_embeddings=max_position_embeddings)
        self.max_position_embeddings = self.rope_scaling.max_position_embeddings

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any]) -> HuggingFaceConfig:
        config = cls(**config_dict)
        config.validate()
        return config

    def validate(self) -> None:
        for name in ("vocab_size", "num_attention_heads", "num_key_value_heads", "head_dim", "num_hidden_layers"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be positive")

    def get_num_attention_heads_per_rank(self) -> int:
        return self.num_attention_heads  # one rank: no tensor parallelism in the stand-in

    def get_num_kv_heads_per_rank(self) -> int:
        return self.num_key_value_heads
