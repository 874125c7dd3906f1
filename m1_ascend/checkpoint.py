"""Load and save the official checkpoint layout: ``config.json`` + (sharded) safetensors.

Every tensor's shape is checked against the config from the safetensors headers alone, before
the model is allocated, so a bad 28 GB checkpoint fails in a second with one line naming the
first bad tensor. Safetensors only: nothing is ever unpickled.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import torch
from safetensors import safe_open

from .config import BaichuanM1Config
from .modeling import BaichuanM1ForCausalLM, RotaryTable

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"


class CheckpointError(ValueError):
    """The directory is not a loadable Baichuan-M1 checkpoint; the message says why."""


def expected_shapes(config: BaichuanM1Config) -> dict[str, tuple[int, ...]]:
    """Parameter names and shapes of the official checkpoint (architecture.md §3)."""
    h, i, v = config.hidden_size, config.intermediate_size, config.vocab_size
    shapes: dict[str, tuple[int, ...]] = {
        "model.embed_tokens.weight": (v, h),
        "model.norm.weight": (h,),
        "lm_head.weight": (v, h),
    }
    for layer in range(config.num_hidden_layers):
        _, n_kv, d = config.layer_heads(layer)
        p = f"model.layers.{layer}."
        shapes |= {
            p + "input_layernorm.weight": (h,),
            p + "self_attn.W_pack.weight": (h + 2 * n_kv * d, h),
            p + "self_attn.conv_k": (1, 1, n_kv, 1, config.conv_window),
            p + "self_attn.conv_v": (1, 1, n_kv, 1, config.conv_window),
            p + "self_attn.o_proj.weight": (h, h),
            p + "post_attention_layernorm.weight": (h,),
            p + "mlp.gate_proj.weight": (i, h),
            p + "mlp.up_proj.weight": (i, h),
            p + "mlp.down_proj.weight": (h, i),
        }
    return shapes


def read_safetensors_header(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor shapes of one file, after checking the file holds every byte its header promises."""
    size = path.stat().st_size
    with path.open("rb") as f:
        raw_len = f.read(8)
        if len(raw_len) < 8:
            raise CheckpointError(f"{path.name}: truncated safetensors file (no header)")
        (header_len,) = struct.unpack("<Q", raw_len)
        if header_len > size - 8:
            raise CheckpointError(f"{path.name}: truncated safetensors file (header cut short)")
        try:
            header = json.loads(f.read(header_len))
        except ValueError as exc:
            raise CheckpointError(f"{path.name}: unreadable safetensors header ({exc})") from None
    header.pop("__metadata__", None)
    data_len = max((t["data_offsets"][1] for t in header.values()), default=0)
    if 8 + header_len + data_len > size:
        raise CheckpointError(
            f"{path.name}: truncated safetensors file ({size} bytes, header promises {8 + header_len + data_len})")
    return {name: tuple(t["shape"]) for name, t in header.items()}


def checkpoint_files(directory: Path) -> dict[str, Path]:
    """Map each tensor name to the shard holding it, from the index or the single file."""
    index_path = directory / INDEX_FILE
    if index_path.exists():
        try:
            weight_map: dict[str, str] = json.loads(index_path.read_text())["weight_map"]
        except (ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{INDEX_FILE}: unreadable index ({type(exc).__name__}: {exc})") from None
        return {name: directory / shard for name, shard in weight_map.items()}
    single = directory / SINGLE_FILE
    if single.exists():
        return dict.fromkeys(read_safetensors_header(single), single)
    if any(directory.glob("*.bin")) or any(directory.glob("*.pt")):
        raise CheckpointError(f"{directory}: only pickle weights found; convert them to safetensors")
    raise CheckpointError(f"{directory}: no {INDEX_FILE} or {SINGLE_FILE}")


def load_config(directory: str | Path) -> BaichuanM1Config:
    directory = Path(directory)
    config_path = directory / "config.json"
    if not config_path.exists():
        raise CheckpointError(f"{directory}: missing config.json")
    try:
        return BaichuanM1Config.from_json_file(str(config_path))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{config_path.name}: not valid JSON ({exc})") from None


def validate_checkpoint(directory: str | Path, config: BaichuanM1Config) -> dict[str, Path]:
    """Check names and shapes of every tensor against the config; return name -> shard."""
    directory = Path(directory)
    files = checkpoint_files(directory)
    shards = sorted(set(files.values()))
    for shard in shards:
        if not shard.exists():
            raise CheckpointError(f"{shard.name}: listed in {INDEX_FILE} but missing")
    found: dict[str, tuple[int, ...]] = {}
    for shard in shards:
        found |= read_safetensors_header(shard)
    expected = expected_shapes(config)
    for name, shape in expected.items():
        if name not in files or name not in found:
            raise CheckpointError(f"{name}: missing from the checkpoint")
        if found[name] != shape:
            raise CheckpointError(
                f"{name}: shape {list(found[name])} in {files[name].name} does not match {list(shape)} from config.json")
    for name in files:
        if name not in expected:
            raise CheckpointError(f"{name}: unexpected tensor in {files[name].name}")
    return files


def load_checkpoint(
    directory: str | Path, dtype: torch.dtype | None = None, device: str | torch.device = "cpu"
) -> BaichuanM1ForCausalLM:
    """Load an official-layout checkpoint without ``trust_remote_code`` and without pickle."""
    config = load_config(directory)
    files = validate_checkpoint(directory, config)
    state: dict[str, torch.Tensor] = {}
    by_shard: dict[Path, list[str]] = {}
    for name, shard in files.items():
        by_shard.setdefault(shard, []).append(name)
    for shard, names in by_shard.items():
        with safe_open(str(shard), framework="pt", device=str(device)) as f:
            for name in names:
                tensor = f.get_tensor(name)
                state[name] = tensor.to(dtype) if dtype is not None else tensor
    with torch.device("meta"):
        model = BaichuanM1ForCausalLM(config)
    model.load_state_dict(state, strict=True, assign=True)
    for module in model.modules():  # non-persistent buffers were created on "meta"
        if isinstance(module, RotaryTable):
            module.inv_freq = torch.empty_like(module.inv_freq, device=device)
            module.reset()
    if dtype is not None:
        model.config.dtype = dtype
    return model.eval()


def save_checkpoint(model: BaichuanM1ForCausalLM, directory: str | Path, max_shard_size: str = "5GB") -> None:
    """Write the official layout (sharded safetensors + index + config.json).

    transformers 5 records the dtype as ``dtype``; MindIE and transformers 4.x read
    ``torch_dtype``, so both keys are written.
    """
    model.save_pretrained(str(directory), max_shard_size=max_shard_size, safe_serialization=True)
    config_path = Path(directory) / "config.json"
    config = json.loads(config_path.read_text())
    dtype = config.get("dtype") or config.get("torch_dtype") or str(next(model.parameters()).dtype).removeprefix("torch.")
    config["torch_dtype"] = config["dtype"] = dtype
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
