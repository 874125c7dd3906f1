"""Loading the official layout: transformers' Auto classes and our loader agree, saving round-trips,
and every kind of broken checkpoint fails with one line naming the tensor or file."""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

from m1_ascend.checkpoint import INDEX_FILE, CheckpointError, expected_shapes, load_checkpoint
from m1_ascend.cli import main
from m1_ascend.config import ConfigError, preset_config
from m1_ascend.modeling import BaichuanM1ForCausalLM

IDS = torch.tensor([[5, 17, 99, 3, 250, 42, 8, 8, 160, 77, 300, 12]])  # longer than the tiny window


def logits(model: BaichuanM1ForCausalLM) -> torch.Tensor:
    with torch.no_grad():
        return model(IDS).logits


def shards(directory: Path) -> list[Path]:
    return sorted(directory.glob("model-*.safetensors"))


def test_layout_is_sharded_with_an_index(tiny_model_dir: Path) -> None:
    index = json.loads((tiny_model_dir / INDEX_FILE).read_text())
    assert len(shards(tiny_model_dir)) > 1
    assert set(index["weight_map"]) == set(expected_shapes(preset_config("tiny")))
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert config["model_type"] == "baichuan_m1"
    # MindIE and transformers 4.x read torch_dtype; transformers 5 writes dtype.
    assert config["torch_dtype"] == config["dtype"] == "float32"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_auto_model_and_own_loader_give_identical_logits(tiny_model_dir: Path, dtype: torch.dtype) -> None:
    ours = load_checkpoint(tiny_model_dir, dtype=dtype)
    auto = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=dtype).eval()
    assert type(auto) is BaichuanM1ForCausalLM
    assert next(auto.parameters()).dtype == next(ours.parameters()).dtype == dtype
    assert torch.equal(logits(auto), logits(ours))


def test_save_pretrained_round_trip(tiny_model: BaichuanM1ForCausalLM, tmp_path: Path) -> None:
    tiny_model.save_pretrained(tmp_path)
    again = load_checkpoint(tmp_path)
    original = tiny_model.state_dict()
    assert set(again.state_dict()) == set(original)
    assert all(torch.equal(t, original[name]) for name, t in again.state_dict().items())
    assert torch.equal(logits(again), logits(tiny_model))


def test_expected_shapes_pin_the_14b_parameter_count() -> None:
    shapes = expected_shapes(preset_config("baichuan-m1-14b"))
    assert sum(math.prod(s) for s in shapes.values()) == 14_470_764_320  # architecture.md §3.3
    assert shapes["model.layers.0.self_attn.W_pack.weight"] == (6144, 5120)
    assert shapes["model.layers.1.self_attn.W_pack.weight"] == (7168, 5120)
    assert shapes["model.layers.39.self_attn.conv_k"] == (1, 1, 8, 1, 2)


# ---- broken checkpoints ----------------------------------------------------------------------------

def rewrite_tensors(directory: Path, change: Callable[[dict[str, torch.Tensor]], None]) -> None:
    """Apply ``change`` to the tensors of the shard holding layer 1's conv_k; keep the index in step."""
    index_path = directory / INDEX_FILE
    index = json.loads(index_path.read_text())
    shard = directory / index["weight_map"]["model.layers.1.self_attn.conv_k"]
    tensors = load_file(shard)
    change(tensors)
    save_file(tensors, shard, metadata={"format": "pt"})
    index["weight_map"] = {n: f for n, f in index["weight_map"].items() if f != shard.name}
    index["weight_map"].update(dict.fromkeys(tensors, shard.name))
    index_path.write_text(json.dumps(index))


def drop_conv(directory: Path) -> None:
    rewrite_tensors(directory, lambda t: t.pop("model.layers.1.self_attn.conv_k"))


def add_bias(directory: Path) -> None:
    rewrite_tensors(directory, lambda t: t.update({"model.layers.1.self_attn.W_pack.bias": torch.zeros(128)}))


def wrong_shape(directory: Path) -> None:
    rewrite_tensors(directory, lambda t: t.update({"model.layers.1.self_attn.conv_k": torch.zeros(1, 1, 3, 1, 2)}))


def truncate_shard(directory: Path) -> None:
    shard = shards(directory)[1]
    shard.write_bytes(shard.read_bytes()[:-100])


def delete_shard(directory: Path) -> None:
    shards(directory)[1].unlink()


def delete_config(directory: Path) -> None:
    (directory / "config.json").unlink()


def pickle_only(directory: Path) -> None:
    for shard in shards(directory):
        shard.unlink()
    (directory / INDEX_FILE).unlink()
    (directory / "pytorch_model.bin").write_bytes(b"not unpickled")


def corrupt_index(directory: Path) -> None:
    (directory / INDEX_FILE).write_text("{not json")


def corrupt_config(directory: Path) -> None:
    (directory / "config.json").write_text("{not json")


def bad_geometry(directory: Path) -> None:
    config = json.loads((directory / "config.json").read_text())
    config["num_swa_attention_heads"] = 3
    (directory / "config.json").write_text(json.dumps(config))


BROKEN = {  # what the message must name; bad geometry is the config's own error
    "missing tensor": (drop_conv, "model.layers.1.self_attn.conv_k", CheckpointError),
    "unexpected tensor": (add_bias, "model.layers.1.self_attn.W_pack.bias", CheckpointError),
    "wrong shape": (wrong_shape, "model.layers.1.self_attn.conv_k", CheckpointError),
    "truncated shard": (truncate_shard, "model-00002-of-", CheckpointError),
    "missing shard": (delete_shard, "model-00002-of-", CheckpointError),
    "no config": (delete_config, "config.json", CheckpointError),
    "pickle only": (pickle_only, "pickle", CheckpointError),
    "corrupt index": (corrupt_index, INDEX_FILE, CheckpointError),
    "corrupt config": (corrupt_config, "config.json", CheckpointError),
    "bad geometry": (bad_geometry, "num_swa_attention_heads", ConfigError),
}


@pytest.fixture(params=sorted(BROKEN))
def broken(request: pytest.FixtureRequest, tiny_model_dir: Path, tmp_path: Path) -> tuple[Path, str, type]:
    damage, expected, error = BROKEN[request.param]
    directory = tmp_path / "checkpoint"
    shutil.copytree(tiny_model_dir, directory)
    damage(directory)
    return directory, expected, error


def test_broken_checkpoint_fails_with_one_line_naming_it(broken: tuple[Path, str, type]) -> None:
    directory, expected, error = broken
    with pytest.raises(error) as info:
        load_checkpoint(directory)
    message = str(info.value)
    assert expected in message
    assert "\n" not in message


def test_broken_checkpoint_on_the_command_line(broken: tuple[Path, str, type],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    directory, expected, _ = broken
    assert main(["check-checkpoint", str(directory)]) == 1
    out, err = capsys.readouterr()
    assert err.startswith("m1-ascend check-checkpoint: error: ")
    assert expected in err
    assert err.count("\n") == 1
    assert "Traceback" not in out + err


def test_check_checkpoint_reports_a_good_one(tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-checkpoint", str(tiny_model_dir)]) == 0
    out = capsys.readouterr().out
    assert "all 39 tensors match config.json" in out
    assert "<B_SYS>=71" in out and "<C_A>=74" in out
    assert "'<B_SYS>S<C_Q>U<C_A>' (as documented)" in out

