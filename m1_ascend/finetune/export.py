"""Merge a LoRA adapter into its base model and write the official checkpoint layout.

The result (sharded safetensors + index + ``config.json`` + the base's tokenizer and other
files) is what ``load_checkpoint``, the server and the MindIE kit read, so a department's
fine-tune deploys like the original model. The merge adds ``scale * B @ A`` in fp32 and rounds
once to the stored dtype, so a bf16 checkpoint loses no more than one rounding per weight.
"""

from __future__ import annotations

import logging
from pathlib import Path

from .files import copy_support_files
from .lora_weights import AdapterError, load_lora, merge_lora

logger = logging.getLogger(__name__)


def resolve_base(adapter_dir: Path, base_dir: str | Path | None, recorded: str | None) -> Path:
    """``--base`` if given, else the base model path peft recorded in ``adapter_config.json``."""
    base = base_dir or recorded
    if not base:
        raise AdapterError(f"{adapter_dir}: adapter_config.json records no base model; pass --base DIR")
    path = Path(base).expanduser()
    if not (path / "config.json").is_file():
        raise AdapterError(f"base model {path} is not a local checkpoint directory (no config.json)")
    return path


def export_merged(adapter_dir: str | Path, output_dir: str | Path, base_dir: str | Path | None = None,
                  max_shard_size: str = "5GB") -> Path:
    """Write base + adapter as one checkpoint in ``output_dir`` (which must be new or empty)."""
    from ..checkpoint import load_checkpoint, save_checkpoint

    adapter_dir, output = Path(adapter_dir), Path(output_dir)
    lora = load_lora(adapter_dir)
    base = resolve_base(adapter_dir, base_dir, lora.base_model_name_or_path)
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise AdapterError(f"output directory {output} already exists and is not empty")
    if output.resolve() == base.resolve():
        raise AdapterError("the output directory must differ from the base model directory")
    model = load_checkpoint(base)
    count = merge_lora(model, lora)
    logger.info("merged %d LoRA modules from %s into %s", count, adapter_dir, base)
    save_checkpoint(model, output, max_shard_size=max_shard_size)
    copy_support_files(base, output)
    return output
