"""``BaichuanM1Config`` for MindIE: the official ``config.json`` plus the cache shape MindIE allocates.

MindIE sizes its KV cache from ``num_hidden_layers``, ``num_key_value_heads`` and ``head_dim`` of this
object, one shape for every layer. Those three fields therefore describe the cache
(``CacheGeometry``: widest layer's geometry, one extra conv-state layer), not the network; the
network is built from the untouched ``config.json`` by ``m1_ascend.config.BaichuanM1Config``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mindie_llm.runtime.config.huggingface_config import BaseRopeScaling, HuggingFaceConfig

from ..config import BaichuanM1Config as NetworkConfig
from ..config import ConfigError
from .geometry import CacheGeometry


@dataclass
class BaichuanM1RopeScaling(BaseRopeScaling):
    """Plain RoPE: Baichuan-M1 has no ``rope_scaling`` (MindIE's runner reads ``factor``)."""

    factor: float = field(default=1.0)

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any] | None, rope_theta: float = 1000000.0,
                  max_position_embeddings: int | None = None) -> BaichuanM1RopeScaling:
        if config_dict:
            raise ConfigError(f"config field 'rope_scaling': Baichuan-M1 uses plain RoPE, got {config_dict}")
        return cls(rope_theta=rope_theta, max_position_embeddings=max_position_embeddings)


@dataclass
class BaichuanM1Config(HuggingFaceConfig):
    """What MindIE's router builds from ``config.json`` (+ ``generation_config.json``)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        network = NetworkConfig(**kwargs)  # validates the geometry, naming the bad field
        geometry = CacheGeometry.from_config(network)
        self.head_dim = geometry.head_dim
        self.num_key_value_heads = geometry.kv_heads
        self.num_hidden_layers = geometry.num_cache_layers

    def _create_rope_scaling(self, rope_scaling_dict: dict[str, Any], rope_theta: float,
                             max_position_embeddings: int | None) -> BaichuanM1RopeScaling:
        return BaichuanM1RopeScaling.from_dict(rope_scaling_dict, rope_theta, max_position_embeddings)
