"""Temporary MindIE-like trees built from the stand-in, and importing them for one test."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

STANDIN = Path(__file__).parent / "mindie_llm"
# Adapter modules bind to the mindie_llm they were first imported with; forget them with it.
ADAPTER_MODULES = [f"m1_ascend.mindie_adapter.{name}" for name in ("config", "router", "model", "input_builder")]


def make_mindie_tree(root: Path, version: str | None = "3.1.0") -> Path:
    """A pip-style site-packages holding the stand-in ``mindie_llm`` and its dist-info; returns it."""
    site = root / "site-packages"
    shutil.copytree(STANDIN, site / "mindie_llm", ignore=shutil.ignore_patterns("__pycache__"))
    if version is not None:
        dist_info = site / f"mindie_llm-{version}.dist-info"
        dist_info.mkdir()
        (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: mindie_llm\nVersion: {version}\n")
    return site


@contextmanager
def mindie_importable(site: Path) -> Iterator[None]:
    """Make ``site``'s ``mindie_llm`` importable, as MindIE's own Python would; undo it afterwards."""
    sys.path.insert(0, str(site))
    try:
        yield
    finally:
        sys.path.remove(str(site))
        for name in [n for n in sys.modules if n.split(".")[0] == "mindie_llm" or n in ADAPTER_MODULES]:
            del sys.modules[name]
