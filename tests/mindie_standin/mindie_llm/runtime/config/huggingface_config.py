"""Stand-in for ``mindie_llm.runtime.config.huggingface_config`` (MindIE-LLM 8b4871a, runtime/config/huggingface_config.py).

What a model's config must provide and how it is checked: field ranges (:115-141, MindIE's
``IntParameterValidator(Field(...))`` metadata, kept here as ``(low, high)`` bounds), token ids in
the vocabulary (:199-223), ``rope_scaling`` built by the model's ``_create_rope_scaling`` when it
has one, then ``max_position_embeddings`` taken from ``rope_scaling`` (:148-160). Heads per rank
divide by the ATTN_TP group size (:174-190), so ``init_distributed`` must have run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

from mindie_llm.runtime.utils.distributed import get_parallel_info_manager
from mindie_llm.runtime.utils.distributed.parallel_info_manager import ParallelType
from mindie_llm.utils.log.logging import logger
from transformers.configuration_utils import PretrainedConfig

_INT_MAX = 2147483647


def _bounds(low: float, high: float = math.inf) -> dict[str, tuple[float, float]]:
    return {"range": (low, high)}


def _check_fields(obj: Any) -> None:
    """Each field with a ``range`` must be None or lie in it (MindIE: ``validator.validate(value, name)``)."""
    for item in fields(obj):
        if "range" not in item.metadata:
            continue
        low, high = item.metadata["range"]
        value = getattr(obj, item.name)
        if value is not None and not low <= value <= high:
            raise ValueError(f"{item.name}={value} must lie in [{low}, {high}]")


def _check_token_ids(obj: Any, vocab_size: int) -> None:
    """pad in [-1, vocab], bos in [0, vocab - 1], eos an id or (nested) list of ids in [0, vocab - 1]."""
    def flat(value: Any) -> list[int]:
        return [x for item in value for x in flat(item)] if isinstance(value, list) else [value]

    for name, low, high, value in (("pad_token_id", -1, vocab_size, obj.pad_token_id),
                                   ("bos_token_id", 0, vocab_size - 1, obj.bos_token_id),
                                   ("eos_token_id", 0, vocab_size - 1, obj.eos_token_id)):
        if value is not None and not all(low <= x <= high for x in flat(value)):
            raise ValueError(f"{name}={value} must lie in [{low}, {high}]")


@dataclass
class GenerationConfig:
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | list[int | list[int]] = None

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any]) -> GenerationConfig:
        names = {item.name for item in fields(cls)}
        return cls(**{k: v for k, v in config_dict.items() if k in names})

    def validate(self, vocab_size: int) -> None:
        if not isinstance(vocab_size, int):
            logger.error("`vocab_size` in the config.json from model weight path must be an integer.")
            raise ValueError("`vocab_size` in the config.json from model weight path must be an integer.")
        _check_token_ids(self, vocab_size)


@dataclass
class BaseRopeScaling:
    rope_theta: float = field(default=1000000.0, metadata=_bounds(-1e9, 1e9))
    max_position_embeddings: int | None = field(default=None, metadata=_bounds(1, _INT_MAX))

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any], rope_theta: float = 1000000.0,
                  max_position_embeddings: int | None = None) -> BaseRopeScaling:
        """The base class ignores the dict; models with rope scaling override this (:91-108)."""
        return cls(rope_theta=rope_theta, max_position_embeddings=max_position_embeddings)


@dataclass
class HuggingFaceConfig(PretrainedConfig):
    vocab_size: int | None = field(default=None, metadata=_bounds(1))
    hidden_size: int | None = field(default=None, metadata=_bounds(1, _INT_MAX))
    intermediate_size: int | None = field(default=None, metadata=_bounds(1, _INT_MAX))
    num_attention_heads: int | None = field(default=None, metadata=_bounds(1, 10000))
    num_key_value_heads: int | None = field(default=None, metadata=_bounds(1, 10000))
    head_dim: int | None = field(default=None, metadata=_bounds(1, 1000))
    rms_norm_eps: float | None = field(default=None, metadata=_bounds(0, 1))
    num_hidden_layers: int | None = field(default=None, metadata=_bounds(1, 1000))
    max_position_embeddings: int | None = field(default=None, metadata=_bounds(1))
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
        self._validate_config()
        self._validate_rope_scaling()

    def get_num_attention_heads_per_rank(self) -> int:
        group_size = get_parallel_info_manager().get(ParallelType.ATTN_TP).group_size
        return (self.num_attention_heads + group_size - 1) // group_size

    def get_num_kv_heads_per_rank(self) -> int:
        """KV heads are replicated when there are fewer of them than TP ranks."""
        tp_size = get_parallel_info_manager().get(ParallelType.ATTN_TP).group_size
        repeat_times = tp_size // self.num_key_value_heads if self.num_key_value_heads < tp_size else 1
        return (self.num_key_value_heads * repeat_times + tp_size - 1) // tp_size

    def _validate_config(self) -> None:
        _check_fields(self)
        _check_token_ids(self, self.vocab_size)

    def _validate_rope_scaling(self) -> None:
        if self.rope_scaling is not None:
            _check_fields(self.rope_scaling)
