"""Baichuan-M1 configuration: every field of the official ``config.json``, validated up front.

Validation happens in ``__init__`` so a wrong geometry fails with a message naming the field
before any weight is allocated.
"""

from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig


class ConfigError(ValueError):
    """A config field has a value the architecture cannot run."""


class BaichuanM1Config(PretrainedConfig):
    model_type = "baichuan_m1"
    keys_to_ignore_at_inference = ["past_key_values"]

    def __init__(
        self,
        vocab_size: int = 133120,
        hidden_size: int = 5120,
        intermediate_size: int = 17408,
        num_hidden_layers: int = 40,
        num_attention_heads: int = 20,
        num_key_value_heads: int = 2,
        num_swa_attention_heads: int = 40,
        num_swa_key_value_heads: int = 8,
        sliding_window: int = 8192,
        sliding_window_layers: list[int] | None = None,
        conv_window: int = 2,
        hidden_act: str = "silu",
        max_position_embeddings: int = 32768,
        model_max_length: int | None = None,
        rope_theta: float = 1e6,
        rms_norm_eps: float = 1e-6,
        initializer_range: float = 0.02,
        attention_dropout: float = 0.0,
        use_cache: bool = True,
        pad_token_id: int | None = 0,
        bos_token_id: int | None = 1,
        eos_token_id: int | list[int] | None = 2,
        tie_word_embeddings: bool = False,
        **kwargs: Any,
    ) -> None:
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.num_key_value_heads = num_key_value_heads
        self.num_swa_attention_heads = num_swa_attention_heads
        self.num_swa_key_value_heads = num_swa_key_value_heads
        self.sliding_window = sliding_window
        if sliding_window_layers is None:
            sliding_window_layers = list(range(1, num_hidden_layers, 2))
        self.sliding_window_layers = [int(i) for i in sliding_window_layers]
        self.conv_window = conv_window
        self.hidden_act = hidden_act
        self.max_position_embeddings = max_position_embeddings
        self.model_max_length = model_max_length or max_position_embeddings
        self.rope_theta = rope_theta
        self.rms_norm_eps = rms_norm_eps
        self.initializer_range = initializer_range
        self.attention_dropout = attention_dropout
        self.use_cache = use_cache
        super().__init__(
            pad_token_id=pad_token_id,
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            tie_word_embeddings=tie_word_embeddings,
            **kwargs,
        )
        self.validate_geometry()

    def validate_geometry(self) -> None:
        """Reject geometries the official network cannot have, naming the offending field."""

        def require(ok: bool, field: str, message: str) -> None:
            if not ok:
                raise ConfigError(f"config field '{field}': {message}")

        for field in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                      "max_position_embeddings", "sliding_window"):
            require(int(getattr(self, field)) > 0, field, f"must be positive, got {getattr(self, field)}")
        for heads, kv_heads in (("num_attention_heads", "num_key_value_heads"),
                                ("num_swa_attention_heads", "num_swa_key_value_heads")):
            n_h, n_kv = getattr(self, heads), getattr(self, kv_heads)
            require(n_h > 0 and self.hidden_size % n_h == 0, heads,
                    f"{n_h} does not divide hidden_size {self.hidden_size}")
            require((self.hidden_size // n_h) % 2 == 0, heads,
                    f"head_dim {self.hidden_size // n_h} must be even for rotary embeddings")
            require(n_kv > 0 and n_h % n_kv == 0, kv_heads,
                    f"{n_kv} does not divide {heads} {n_h}")
        require(self.conv_window == 2, "conv_window",
                f"only 2 is supported (as in the official inference code), got {self.conv_window}")
        require(self.hidden_act == "silu", "hidden_act", f"only 'silu' is supported, got {self.hidden_act!r}")
        bad = [i for i in self.sliding_window_layers if not 0 <= i < self.num_hidden_layers]
        require(not bad, "sliding_window_layers",
                f"indices {bad} are out of range for num_hidden_layers={self.num_hidden_layers}")
        require(len(set(self.sliding_window_layers)) == len(self.sliding_window_layers),
                "sliding_window_layers", "contains duplicate layer indices")

    # Geometry helpers used by the model, the cache manager and the memory plan.
    def is_sliding(self, layer_idx: int) -> bool:
        return layer_idx in self.sliding_window_layers

    def layer_heads(self, layer_idx: int) -> tuple[int, int, int]:
        """(query heads, KV heads, head_dim) of one layer: the two geometries differ."""
        if self.is_sliding(layer_idx):
            n_h, n_kv = self.num_swa_attention_heads, self.num_swa_key_value_heads
        else:
            n_h, n_kv = self.num_attention_heads, self.num_key_value_heads
        return n_h, n_kv, self.hidden_size // n_h


PRESETS: dict[str, dict[str, Any]] = {
    # The real 14B geometry (architecture.md §1); rope_theta/eps/ids must still come from the checkpoint.
    "baichuan-m1-14b": {},
    # Small presets keep the real layer pattern (odd layers sliding) and the two head geometries.
    "tiny": dict(vocab_size=320, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                 num_attention_heads=2, num_key_value_heads=1, num_swa_attention_heads=4,
                 num_swa_key_value_heads=2, sliding_window=8, max_position_embeddings=512,
                 rope_theta=10000.0),
    "demo": dict(vocab_size=2048, hidden_size=256, intermediate_size=704, num_hidden_layers=4,
                 num_attention_heads=2, num_key_value_heads=1, num_swa_attention_heads=4,
                 num_swa_key_value_heads=2, sliding_window=256, max_position_embeddings=4096,
                 rope_theta=100000.0),
    "bench": dict(vocab_size=8192, hidden_size=1024, intermediate_size=2816, num_hidden_layers=8,
                  num_attention_heads=4, num_key_value_heads=1, num_swa_attention_heads=8,
                  num_swa_key_value_heads=2, sliding_window=512, max_position_embeddings=8192,
                  rope_theta=100000.0),
}


def preset_config(name: str, **overrides: Any) -> BaichuanM1Config:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return BaichuanM1Config(**{**PRESETS[name], **overrides})
