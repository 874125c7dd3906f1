"""Turn the engine's user-facing arguments (model, device, dtype) into a ready model and tokenizer."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..modeling import BaichuanM1ForCausalLM

if TYPE_CHECKING:
    from ..tokenizer import M1Tokenizer

DTYPES = {
    "float32": torch.float32, "fp32": torch.float32,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16,
}


def resolve_dtype(dtype: str | torch.dtype | None, device: str, checkpoint_dtype: torch.dtype | None) -> torch.dtype:
    """None: float32 on CPU (bf16 matmuls are slow there), the checkpoint's dtype (else bf16) on an NPU."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None or dtype == "auto":
        if device == "cpu" and dtype is None:
            return torch.float32
        return checkpoint_dtype or torch.bfloat16
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPES)} or 'auto'")
    return DTYPES[dtype]


def _checkpoint_dtype(directory: Path) -> torch.dtype | None:
    from ..checkpoint import load_config

    value = getattr(load_config(directory), "dtype", None)  # transformers turns "bfloat16" into torch.bfloat16
    if isinstance(value, torch.dtype):
        return value
    return DTYPES.get(str(value)) if value else None


def load_model(model: str | os.PathLike[str] | BaichuanM1ForCausalLM | None, device: str,
               dtype: str | torch.dtype | None) -> tuple[BaichuanM1ForCausalLM, Path | None]:
    """(model in eval mode on ``device``, its checkpoint directory or None for an in-memory model).

    ``None`` means the demo checkpoint, built on first use. An in-memory model that needs another
    dtype, device or mode is copied first: the caller's object (which another engine may be
    running) is never changed.
    """
    if isinstance(model, BaichuanM1ForCausalLM):
        param = next(model.parameters())
        target = resolve_dtype(dtype, device, param.dtype)
        if param.dtype != target or param.device.type != torch.device(device).type or model.training:
            model = copy.deepcopy(model).to(device=device, dtype=target).eval()
        return model, None
    if model is None:
        from ..demo import ensure_demo_checkpoint

        model = ensure_demo_checkpoint()
    from ..checkpoint import load_checkpoint

    directory = Path(model)
    target = resolve_dtype(dtype, device, _checkpoint_dtype(directory))
    return load_checkpoint(directory, dtype=target, device=device), directory


def load_tokenizer(directory: Path | None) -> M1Tokenizer | None:
    """The checkpoint's tokenizer when it ships one; without it the engine works on token ids only."""
    if directory is None:
        return None
    from ..tokenizer import TOKENIZER_FILE, M1Tokenizer

    if not (directory / TOKENIZER_FILE).exists():
        return None
    return M1Tokenizer.from_pretrained(directory)
