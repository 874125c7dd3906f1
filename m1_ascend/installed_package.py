"""Where an installed package lives and which version its wheel recorded, found without importing it.

Used by the installers into other products (MindIE-LLM, openMind): importing those packages has side
effects (openMind patches transformers), and a tree given by path is not importable at all.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path


def package_dir(name: str) -> Path | None:
    """The folder of the package ``name`` this Python would import, or None."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))).resolve()


def dist_info_version(package: Path, distribution: str) -> str | None:
    """``Version:`` of the ``<distribution>-*.dist-info`` beside the package folder, or None."""
    for metadata in sorted(package.parent.glob(f"{distribution}-*.dist-info/METADATA")):
        match = re.search(r"^Version:\s*(\S+)", metadata.read_text(errors="replace"), re.MULTILINE)
        if match:
            return match.group(1)
    return None
