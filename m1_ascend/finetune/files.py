"""Which files travel with a model directory besides its weights (tokenizer, generation config, code)."""

from __future__ import annotations

import shutil
from pathlib import Path

from ..weights import MANIFEST

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
# Written by save_pretrained itself, or describing the source's weights (a copied SHA256SUMS would
# make the server refuse the new weights as altered).
NOT_COPIED = ("config.json", "model.safetensors.index.json", MANIFEST)


def copy_support_files(source: str | Path, target: str | Path) -> list[str]:
    """Copy everything in ``source`` except weights, the files ``save_pretrained`` writes and the weight manifest.

    That keeps the tokenizer files, ``generation_config.json`` and any remote-code files with
    the new weights, without having to know every tokenizer's file names.
    """
    source, target = Path(source), Path(target)
    target.mkdir(parents=True, exist_ok=True)
    copied = []
    for path in sorted(source.iterdir()):
        if path.is_file() and path.suffix not in WEIGHT_SUFFIXES and path.name not in NOT_COPIED:
            shutil.copy2(path, target / path.name)
            copied.append(path.name)
    return copied
