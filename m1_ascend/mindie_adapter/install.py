"""Install the adapter into a MindIE-LLM tree as ``mindie_llm/runtime/models/baichuan_m1/``.

The installed files are shims that import this package, named as MindIE's discovery demands
(folder = ``model_type``, ``router_<type>.py`` with ``BaichuanM1Router``, ``config_<type>.py``,
``<type>.py``, ``input_builder_<type>.py``). Rules:

- MindIE must be there and contain the torch runtime the adapter codes against, recognised by what
  the tree defines (``CONTRACT``), not by a version number: real trees report 2.3.0 (README),
  3.0.0 (release builds) or 1.0.0 (a wheel built without the version override) for the same code.
  Otherwise nothing is written and the missing pieces are named. The version found is reported.
- Nothing of MindIE's is ever overwritten: an existing ``baichuan_m1`` folder without our manifest
  is refused, and uninstall removes only the files the manifest lists, unchanged since install.
- Permissions follow MindIE's file checks: no group/other write (folders 0750, files 0640), files
  owned by the owner of MindIE's ``models`` folder when installing as root.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from .. import __version__
from ..installed_package import dist_info_version
from ..installed_package import package_dir as installed_package_dir
from . import ADAPTER_API, MODEL_TYPE

MANIFEST = ".m1_ascend_manifest.json"
DIR_MODE, FILE_MODE = 0o750, 0o640
# What the adapter needs of MindIE-LLM, as (file, text it must contain): the base classes it subclasses
# and the torch runtime that drives it (Ascend/MindIE-LLM v3.0.0, commit 8b4871a): ModelRunnerExp with
# its static input buffers, the _exp forward context, the ACL-graph backend, the FIA metadata, a loader
# that reads model.config, and a generator that sends backendType "torch" to ModelRunnerExp.
CONTRACT = [
    ("runtime/models/__init__.py", "def get_router_ins"),
    ("runtime/models/base/router.py", "class BaseRouter"),
    ("runtime/models/base/model.py", "class BaseModelForCausalLM"),
    ("runtime/models/base/input_builder.py", "class InputBuilder"),
    ("runtime/config/huggingface_config.py", "class BaseRopeScaling"),
    ("runtime/layers/attention/attention_layer.py", "class Attention"),
    ("runtime/model_runner/forward_context_exp.py", "def get_forward_context"),
    ("runtime/model_runner/forward_context_exp.py", "class BatchDescriptor"),
    ("runtime/model_runner/model_runner_exp.py", "class ModelRunnerExp"),
    ("runtime/model_runner/model_runner_exp.py", "def _padding_forward_context"),
    ("runtime/model_runner/input_buffer.py", "input_buffer"),
    ("runtime/compilation/aclgraph_backend.py", "class AclGraphBackend"),
    ("runtime/layers/attention/backend/fia_attention.py", "class FiaAttentionMetadata"),
    ("runtime/utils/loader/default_model_loader.py", "model.config"),
    ("modeling/model_wrapper/aclgraph/aclgraph_model_wrapper_exp.py", "class AclGraphModelWrapperExp"),
    ("text_generator/generator.py", "ENV.model_runner_exp = True"),
]
# Installed module -> (module of this package, class it re-exports).
SHIMS = {
    f"router_{MODEL_TYPE}.py": ("router", "BaichuanM1Router"),
    f"config_{MODEL_TYPE}.py": ("config", "BaichuanM1Config"),
    f"{MODEL_TYPE}.py": ("model", "BaichuanM1ForCausalLM"),
    f"input_builder_{MODEL_TYPE}.py": ("input_builder", "BaichuanM1InputBuilder"),
}
HEADER = "# Installed by `m1-ascend mindie-adapter install` (m1-ascend {version}); removed by `... uninstall`.\n"


class InstallError(RuntimeError):
    """MindIE is missing, unsupported, or the install would touch files that are not ours."""


@dataclass
class MindIEInstall:
    """A located MindIE-LLM package and what the adapter needs to know about it."""

    package_dir: Path  # the ``mindie_llm`` directory
    version: str | None
    missing_contract: list[str] = field(default_factory=list)

    @property
    def models_dir(self) -> Path:
        return self.package_dir / "runtime" / "models"

    @property
    def target_dir(self) -> Path:
        return self.models_dir / MODEL_TYPE

    def refusal(self) -> str | None:
        """Why the adapter cannot go into this MindIE, or None."""
        found = f"MindIE-LLM {self.version or '(version unknown)'} at {self.package_dir}"
        if not self.models_dir.is_dir():
            return f"{found} has no torch runtime (runtime/models); the adapter needs MindIE-LLM 3.0.0 or later"
        if self.missing_contract:
            return (f"{found} lacks the torch runtime the adapter needs (MindIE-LLM 3.0.0 or later): "
                    f"{'; '.join(self.missing_contract)}")
        return None


def locate_mindie(root: str | Path | None) -> MindIEInstall:
    """Find the ``mindie_llm`` package in or under ``root`` (default: the one this Python imports)."""
    if root is None:
        package_dir = installed_package_dir("mindie_llm")
        if package_dir is None:
            raise InstallError("MindIE-LLM is not importable from this Python; pass --mindie-root PATH")
    else:
        root = Path(root).expanduser().resolve()
        if not root.is_dir():
            raise InstallError(f"--mindie-root {root} is not a directory")
        package_dir = _find_package(root)
    version = dist_info_version(package_dir, "mindie_llm") or _version_info(package_dir)
    missing = [f"{rel} ({symbol})" for rel, symbol in CONTRACT if not _defines(package_dir / rel, symbol)]
    return MindIEInstall(package_dir, version, missing)


def _defines(path: Path, symbol: str) -> bool:
    return path.is_file() and symbol in path.read_text(errors="replace")


def _find_package(root: Path) -> Path:
    if root.name == "mindie_llm" and (root / "__init__.py").is_file():
        return root
    if (root / "mindie_llm" / "__init__.py").is_file():
        return root / "mindie_llm"
    # A run-package install nests the package (e.g. .../lib/python3.11/site-packages/mindie_llm).
    found = sorted({p.parent for depth in range(1, 7)
                    for p in root.glob("/".join(["*"] * depth) + "/mindie_llm/__init__.py")})
    if not found:
        raise InstallError(f"no MindIE-LLM under {root} (looked for a mindie_llm package up to 7 levels down)")
    if len(found) > 1:
        raise InstallError(f"several MindIE-LLM packages under {root}: {', '.join(map(str, found))}; pass one of them")
    return found[0]


def _version_info(package_dir: Path) -> str | None:
    """``version.info`` of a run-package install: in the package folder or one of its parents."""
    for directory in [package_dir, *package_dir.parents][:8]:
        info = directory / "version.info"
        if info.is_file():
            match = re.search(r"(\d+\.\d+(?:\.[0-9A-Za-z]+)?)", info.read_text(errors="replace"))
            if match:
                return match.group(1)
    return None


def shim_sources() -> dict[str, str]:
    """File name -> content of every file the installer writes into the ``baichuan_m1`` folder."""
    header = HEADER.format(version=__version__)
    init = header + (
        '"""Baichuan-M1 for MindIE\'s torch runtime; the code lives in the m1-ascend package."""\n'
        "try:\n"
        "    from m1_ascend.mindie_adapter import ADAPTER_API\n"
        "except ModuleNotFoundError as exc:\n"
        "    if (exc.name or \"\").partition(\".\")[0] != \"m1_ascend\":\n"
        "        raise\n"
        "    raise ImportError(\"baichuan_m1 needs the m1-ascend package in MindIE's Python: \"\n"
        "                      \"pip install m1-ascend there, then run `m1-ascend mindie-adapter install`\") from exc\n"
        f"if ADAPTER_API != {ADAPTER_API}:\n"
        "    raise ImportError(\"baichuan_m1 was installed by another m1-ascend version: \"\n"
        "                      \"run `m1-ascend mindie-adapter install` again\")\n")
    files = {"__init__.py": init}
    for filename, (module, name) in SHIMS.items():
        files[filename] = header + f"from m1_ascend.mindie_adapter.{module} import {name}\n\n__all__ = [\"{name}\"]\n"
    return files


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_manifest(mindie: MindIEInstall) -> dict | None:
    path = mindie.target_dir / MANIFEST
    return json.loads(path.read_text()) if path.is_file() else None


def install(mindie: MindIEInstall) -> list[Path]:
    """Write the shims; return the files written. Re-running over our own install upgrades it."""
    reason = mindie.refusal()
    if reason:
        raise InstallError(reason)
    target = mindie.target_dir
    manifest = read_manifest(mindie)
    if target.exists() and manifest is None:
        raise InstallError(f"{target} exists and was not installed by m1-ascend; refusing to overwrite MindIE's files")
    sources = shim_sources()
    if manifest is not None:
        _check_unmodified(mindie, manifest)
        for stale in set(manifest["files"]) - set(sources):
            (target / stale).unlink(missing_ok=True)
    target.mkdir(mode=DIR_MODE, exist_ok=True)
    written = []
    for filename, text in sources.items():
        path = target / filename
        path.write_text(text)
        written.append(path)
    manifest_path = target / MANIFEST
    manifest_path.write_text(json.dumps({
        "m1_ascend_version": __version__, "adapter_api": ADAPTER_API, "mindie_version": mindie.version,
        "files": {filename: _digest(target / filename) for filename in sources},
    }, indent=2) + "\n")
    written.append(manifest_path)
    _secure(mindie, [target, *written])
    return written


def _secure(mindie: MindIEInstall, paths: list[Path]) -> None:
    owner = mindie.models_dir.stat()
    for path in paths:
        path.chmod(DIR_MODE if path.is_dir() else FILE_MODE)
        if os.geteuid() == 0:  # root installs for MindIE's owner, whom MindIE's owner checks expect
            os.chown(path, owner.st_uid, owner.st_gid)


def _check_unmodified(mindie: MindIEInstall, manifest: dict) -> None:
    for filename, digest in manifest["files"].items():
        path = mindie.target_dir / filename
        if path.is_file() and _digest(path) != digest:
            raise InstallError(f"{path} was changed after m1-ascend installed it; move it away first")


def uninstall(mindie: MindIEInstall) -> list[Path]:
    """Remove exactly what the manifest lists (and the bytecode Python made of it); return it."""
    manifest = read_manifest(mindie)
    if manifest is None:
        raise InstallError(f"no m1-ascend install at {mindie.target_dir}")
    _check_unmodified(mindie, manifest)
    target = mindie.target_dir
    removed = []
    for filename in manifest["files"]:
        path = target / filename
        if path.is_file():
            path.unlink()
            removed.append(path)
        for bytecode in (target / "__pycache__").glob(f"{filename.removesuffix('.py')}.*.pyc"):
            bytecode.unlink()
            removed.append(bytecode)
    (target / MANIFEST).unlink()
    removed.append(target / MANIFEST)
    for directory in (target / "__pycache__", target):
        if directory.is_dir() and not any(directory.iterdir()):
            directory.rmdir()
    return removed


def status(mindie: MindIEInstall) -> list[str]:
    """Human-readable lines: where MindIE is, whether it is supported, the state of our install."""
    lines = [f"MindIE-LLM: {mindie.package_dir} (version {mindie.version or 'unknown'})"]
    here = installed_package_dir("mindie_llm") == mindie.package_dir
    lines.append("python: " + ("this Python runs this MindIE, so the shims can import m1_ascend" if here else
                               "this Python does not import this MindIE: make sure m1-ascend is installed in MindIE's Python"))
    reason = mindie.refusal()
    lines.append(f"supported: {'yes' if reason is None else 'no: ' + reason}")
    manifest = read_manifest(mindie)
    if manifest is None:
        state = "present but not ours" if mindie.target_dir.exists() else "not installed"
        lines.append(f"adapter: {state} ({mindie.target_dir})")
        return lines
    lines.append(f"adapter: installed by m1-ascend {manifest['m1_ascend_version']} at {mindie.target_dir}")
    current = shim_sources()
    for filename, digest in manifest["files"].items():
        path = mindie.target_dir / filename
        if not path.is_file():
            problem = "missing"
        elif _digest(path) != digest:
            problem = "modified since install"
        elif path.read_text() != current.get(filename):
            problem = "from another m1-ascend version (re-run install)"
        elif path.stat().st_mode & 0o022:
            problem = f"group/other writable ({oct(path.stat().st_mode & 0o777)})"
        else:
            continue
        lines.append(f"  {filename}: {problem}")
    return lines
