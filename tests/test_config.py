"""BaichuanM1Config: the official config.json reads in, presets keep the real layer pattern, and
impossible geometries are rejected with a message naming the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoConfig

from m1_ascend.config import BaichuanM1Config, ConfigError, preset_config

# The 14B config.json as assembled in architecture.md §1 ([gap] values filled with placeholders).
OFFICIAL_CONFIG = {
    "architectures": ["BaichuanM1ForCausalLM"],
    "auto_map": {"AutoConfig": "configuration_baichuan.BaichuanM1Config",
                 "AutoModelForCausalLM": "modeling_baichuan.BaichuanM1ForCausalLM"},
    "model_type": "baichuan_m1",
    "vocab_size": 133120, "hidden_size": 5120, "intermediate_size": 17408, "num_hidden_layers": 40,
    "num_attention_heads": 20, "num_key_value_heads": 2,
    "num_swa_attention_heads": 40, "num_swa_key_value_heads": 8,
    "sliding_window": 8192, "sliding_window_layers": list(range(1, 40, 2)), "conv_window": 2,
    "hidden_act": "silu", "max_position_embeddings": 32768, "model_max_length": 32768,
    "rope_theta": 123456.0, "rms_norm_eps": 1e-5, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
    "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2, "use_cache": True,
}


def test_official_config_json_reads_every_field(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(OFFICIAL_CONFIG))
    import m1_ascend  # noqa: F401  (registers baichuan_m1 with AutoConfig)

    config = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(config, BaichuanM1Config)
    for field in ("vocab_size", "hidden_size", "intermediate_size", "num_swa_key_value_heads", "sliding_window",
                  "sliding_window_layers", "rope_theta", "rms_norm_eps", "model_max_length", "eos_token_id"):
        assert getattr(config, field) == OFFICIAL_CONFIG[field], field
    assert config.layer_heads(0) == (20, 2, 256)
    assert config.layer_heads(1) == (40, 8, 128)
    assert not config.is_sliding(38) and config.is_sliding(39)


def test_save_and_reload_keeps_the_fields(tmp_path: Path) -> None:
    config = preset_config("tiny", rope_theta=5e5, sliding_window_layers=[1, 2])
    config.save_pretrained(tmp_path)
    again = BaichuanM1Config.from_pretrained(tmp_path)
    assert again.to_dict() == config.to_dict()


@pytest.mark.parametrize("name", ["baichuan-m1-14b", "tiny", "demo", "bench"])
def test_presets_keep_two_head_geometries_and_odd_sliding_layers(name: str) -> None:
    config = preset_config(name)
    assert config.sliding_window_layers == list(range(1, config.num_hidden_layers, 2))
    global_heads, sliding_heads = config.layer_heads(0), config.layer_heads(1)
    assert global_heads != sliding_heads
    for n_heads, n_kv, head_dim in (global_heads, sliding_heads):
        assert n_heads * head_dim == config.hidden_size and n_heads % n_kv == 0


@pytest.mark.parametrize(("overrides", "field"), [
    ({"num_attention_heads": 3}, "num_attention_heads"),
    ({"num_swa_attention_heads": 5}, "num_swa_attention_heads"),
    ({"num_key_value_heads": 3}, "num_key_value_heads"),
    ({"num_swa_key_value_heads": 3}, "num_swa_key_value_heads"),
    ({"conv_window": 3}, "conv_window"),
    ({"sliding_window_layers": [1, 4]}, "sliding_window_layers"),
    ({"sliding_window_layers": [-1]}, "sliding_window_layers"),
    ({"sliding_window_layers": [1, 1]}, "sliding_window_layers"),
    ({"hidden_act": "gelu"}, "hidden_act"),
    ({"sliding_window": 0}, "sliding_window"),
])
def test_invalid_geometry_names_the_field(overrides: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError, match=f"'{field}'"):
        preset_config("tiny", **overrides)


def test_invalid_config_json_is_rejected_on_load(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(OFFICIAL_CONFIG | {"conv_window": 4}))
    with pytest.raises(ConfigError, match="'conv_window'"):
        BaichuanM1Config.from_pretrained(tmp_path)


def test_unknown_preset_lists_the_choices() -> None:
    with pytest.raises(ConfigError, match="tiny"):
        preset_config("huge")
