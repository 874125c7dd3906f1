"""Temporary MindIE-LLM installs built from the stand-in, and importing one for a test.

Real releases and how they identify themselves (MindIE-LLM 8b4871a): the wheel is named
``mindie_llm`` and its version is ``MINDIE_LLM_VERSION_OVERRIDE`` or ``1.0.0`` (setup.py:36; the
build guide exports 3.0.0); the README's release table says 2.3.0 (with CANN 8.5.0). No 3.1
exists. A version therefore says little: what marks the torch runtime the adapter targets is the
tree's content (report §10), which every tree made here carries -- ``model_runner_exp.py``
(``ModelRunnerExp``), ``forward_context_exp.py``, ``aclgraph_backend.py``, ``input_buffer.py``,
``fia_attention.py``, the loader reading ``model.config``, ``aclgraph_model_wrapper_exp.py`` and
``generator.py`` setting ``ENV.model_runner_exp = True``. ``without`` removes files, to make a tree
that lacks a capability.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

STANDIN = Path(__file__).parent / "mindie_llm"
RELEASE_VERSIONS = ("3.0.0", "2.3.0", "1.0.0")  # build override, README table, setup.py default
# Adapter modules bind to the mindie_llm they were first imported with; forget them with it.
ADAPTER_MODULES = [f"m1_ascend.mindie_adapter.{name}" for name in ("config", "router", "model", "input_builder")]
# Branch dev (be30784, forward_context.py:46-62) adds these lazy proxies; master has neither.
DEV_FORWARD_CONTEXT_PROXIES = '''

def get_forward_context() -> ForwardContext:
    """dev only: the context ``forward_context_exp`` holds."""
    from mindie_llm.runtime.model_runner import forward_context_exp

    return forward_context_exp.get_forward_context()


def set_forward_context(context: ForwardContext) -> None:
    """dev only: sets the context ``forward_context_exp`` holds."""
    from mindie_llm.runtime.model_runner import forward_context_exp

    forward_context_exp.set_forward_context(context)
'''


def make_mindie_tree(root: Path, version: str | None = "3.0.0", forward_context: str = "master",
                     models: Sequence[Path] = (), without: Sequence[str] = ()) -> Path:
    """A pip-style site-packages holding the stand-in ``mindie_llm`` and its dist-info; returns it.

    ``version`` None leaves out the dist-info; ``forward_context="dev"`` gives the dev branch's
    ``forward_context.py``; ``models`` are model folders copied into ``runtime/models/``;
    ``without`` lists paths under ``mindie_llm/`` to delete.
    """
    site = root / "site-packages"
    package = site / "mindie_llm"
    shutil.copytree(STANDIN, package, ignore=shutil.ignore_patterns("__pycache__"))
    if forward_context == "dev":
        with open(package / "runtime/model_runner/forward_context.py", "a", encoding="utf-8") as f:
            f.write(DEV_FORWARD_CONTEXT_PROXIES)
    elif forward_context != "master":
        raise ValueError(f"forward_context is 'master' or 'dev', not {forward_context!r}")
    for model in models:
        shutil.copytree(model, package / "runtime/models" / model.name, ignore=shutil.ignore_patterns("__pycache__"))
    for path in without:
        (package / path).unlink()
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
