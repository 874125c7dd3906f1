"""Register Baichuan-M1 with an installed openMind, so that plain ``openmind-cli train`` can fine-tune it.

openMind 1.0.0 looks a checkpoint's ``model_type`` up in its own model list (LoRA target
defaults, chat template) before it trains, and reads that list and its templates only from two
JSON files inside the installed package, ``flow/configs/models.json`` and ``templates.json``: it
has no setting, path or plugin hook for more. So this adds a ``baichuan_m1`` model group and a
``baichuan_m1`` template (``openmind_template``) to those files, the way ``mindie-adapter
install`` adds a model folder to MindIE:

- openMind is recognised by what it contains (the two files, their shape, the code that reads
  them), so a later release with the same layout works; the versions checked are listed;
- nothing of openMind's is overwritten: a ``baichuan_m1`` entry m1-ascend did not write is refused;
- a manifest beside the files records what was added, and uninstall removes exactly that.

pip rewrites both files when openMind is reinstalled or upgraded; ``--status`` tells, and
registering again puts the entries back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from ..atomic_write import write_text_atomic
from ..installed_package import dist_info_version, package_dir
from .openmind_template import OPENMIND_TEMPLATE, TEMPLATE_NAME
from .recipe import LORA_TARGETS

GROUP_NAME = "baichuan_m1"  # openMind picks the group by config.json's model_type
CHECKED_VERSIONS = ("1.0.0",)
MANIFEST = ".m1_ascend_openmind.json"
MODELS_FILE, TEMPLATES_FILE = "models.json", "templates.json"
# Where openMind reads each file, and what that code must contain for our entries to work.
CONTRACT = {
    "flow/model/model_registry.py": ("configs/models.json", "lora_target", "template"),
    "flow/datasets/template.py": ("configs/templates.json", "system_template", "separator_template", "default_system"),
}


class RegisterError(RuntimeError):
    """openMind is missing or laid out differently, or a change would touch entries that are not ours."""


@dataclass
class OpenMindInstall:
    """A located ``openmind`` package and what registration needs to know about it."""

    package_dir: Path
    version: str | None
    problems: list[str] = field(default_factory=list)  # why our entries would not work there

    @property
    def configs_dir(self) -> Path:
        return self.package_dir / "flow" / "configs"

    @property
    def manifest_path(self) -> Path:
        return self.configs_dir / MANIFEST


def group_entry() -> dict[str, Any]:
    """The ``models.json`` group: no Modelers model ids (nothing to download), LoRA on every Linear layer."""
    return {"models": {}, "lora_target": ",".join(LORA_TARGETS), "template": TEMPLATE_NAME}


def locate_openmind(root: str | Path | None = None) -> OpenMindInstall:
    """The ``openmind`` package in ``root`` (the package, a site-packages or a virtualenv) or that this Python finds.

    Found without importing it: importing openMind patches transformers.
    """
    if root is None:
        package = package_dir("openmind")
        if package is None:
            raise RegisterError("openMind is not installed in this Python; run this with openMind's Python, "
                                "or pass --openmind-root DIR")
    else:
        package = _find_package(Path(root).expanduser().resolve())
    return OpenMindInstall(package, dist_info_version(package, "openmind"), _layout_problems(package))


def _find_package(root: Path) -> Path:
    if not root.is_dir():
        raise RegisterError(f"--openmind-root {root} is not a directory")
    candidates = [root, root / "openmind", *sorted(root.glob("lib/python3*/site-packages/openmind"))]
    found = [c for c in candidates if (c / "flow" / "configs" / MODELS_FILE).is_file()]
    if not found:
        raise RegisterError(f"no openMind under {root}: looked for flow/configs/{MODELS_FILE} in it, in "
                            "openmind/ and in lib/python3*/site-packages/openmind/")
    return found[0]


def _layout_problems(package_dir: Path) -> list[str]:
    problems = []
    for relative, needles in CONTRACT.items():
        path = package_dir / relative
        text = path.read_text(errors="replace") if path.is_file() else ""
        missing = [needle for needle in needles if needle not in text]
        if missing:
            problems.append(f"{relative} does not read {', '.join(missing)}" if text else f"no {relative}")
    try:
        models, templates = _read(package_dir / "flow" / "configs")
    except RegisterError as exc:
        problems.append(str(exc))
    else:
        if not all(isinstance(g, dict) and "models" in g for g in models.values()):
            problems.append(f"{MODELS_FILE} groups do not all have a 'models' entry")
        if not all(isinstance(t, dict) and "name" in t for t in templates):
            problems.append(f"{TEMPLATES_FILE} entries do not all have a 'name'")
    return problems


def _read(configs: Path) -> tuple[dict[str, Any], list[Any]]:
    try:
        models = json.loads((configs / MODELS_FILE).read_text(encoding="utf-8"))
        templates = json.loads((configs / TEMPLATES_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RegisterError(f"cannot read openMind's {configs}: {exc}") from None
    if not isinstance(models, dict) or not isinstance(templates, list):
        raise RegisterError(f"{configs}: {MODELS_FILE} is not an object or {TEMPLATES_FILE} is not a list")
    return models, templates


def _write_json(path: Path, data: Any) -> None:
    """Replace ``path`` atomically, keeping its permissions."""
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    write_text_atomic(path, json.dumps(data, indent=4, ensure_ascii=False) + "\n", mode)


def read_manifest(install: OpenMindInstall) -> dict[str, Any] | None:
    path = install.manifest_path
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _template(templates: list[Any]) -> dict[str, Any] | None:
    return next((t for t in templates if isinstance(t, dict) and t.get("name") == TEMPLATE_NAME), None)


def _entries(install: OpenMindInstall) -> tuple[dict[str, Any], list[Any], Any, Any]:
    models, templates = _read(install.configs_dir)
    return models, templates, models.get(GROUP_NAME), _template(templates)


def register(install: OpenMindInstall) -> None:
    """Add (or update) our group and template; refuses when openMind already has entries of those names."""
    if install.problems:
        raise RegisterError(f"openMind at {install.package_dir} is laid out differently: {'; '.join(install.problems)}")
    manifest = read_manifest(install) or {}
    models, templates, group, template = _entries(install)
    for kind, current, ours in (("model group", group, manifest.get("group")),
                                ("template", template, manifest.get("template"))):
        if current is not None and current != ours:
            raise RegisterError(f"openMind at {install.package_dir} already has a {kind} named {GROUP_NAME!r} that "
                                "m1-ascend did not write (or that was changed since); refusing to overwrite it")
    models[GROUP_NAME] = group_entry()
    templates = [t for t in templates if t is not template] + [dict(OPENMIND_TEMPLATE)]
    _write_json(install.configs_dir / MODELS_FILE, models)
    _write_json(install.configs_dir / TEMPLATES_FILE, templates)
    _write_json(install.manifest_path, {"m1_ascend_version": __version__, "openmind_version": install.version,
                                        "group": group_entry(), "template": dict(OPENMIND_TEMPLATE)})


def uninstall(install: OpenMindInstall) -> None:
    """Remove exactly the entries the manifest records, if nobody changed them since."""
    manifest = read_manifest(install)
    if manifest is None:
        raise RegisterError(f"Baichuan-M1 is not registered with openMind at {install.package_dir} (no {MANIFEST})")
    models, templates, group, template = _entries(install)
    for kind, current, ours in (("model group", group, manifest["group"]), ("template", template, manifest["template"])):
        if current is not None and current != ours:
            raise RegisterError(f"the {kind} {GROUP_NAME!r} in openMind at {install.package_dir} was changed after "
                                "m1-ascend registered it; remove it by hand")
    if group is not None:  # absent when openMind was reinstalled since: nothing to remove
        del models[GROUP_NAME]
        _write_json(install.configs_dir / MODELS_FILE, models)
    if template is not None:
        _write_json(install.configs_dir / TEMPLATES_FILE, [t for t in templates if t is not template])
    install.manifest_path.unlink()


def status(install: OpenMindInstall) -> list[str]:
    """Human-readable lines: where openMind is, whether its layout fits, and the state of our entries."""
    checked = "checked" if install.version in CHECKED_VERSIONS else f"not checked (checked: {', '.join(CHECKED_VERSIONS)})"
    lines = [f"openMind: {install.package_dir} (version {install.version or 'unknown'}, {checked})",
             "layout: " + ("fits" if not install.problems else "differs: " + "; ".join(install.problems))]
    if install.problems:
        return lines
    manifest = read_manifest(install)
    _, _, group, template = _entries(install)
    for kind, current, wanted, key in (("model group", group, group_entry(), "group"),
                                       ("template", template, OPENMIND_TEMPLATE, "template")):
        ours = manifest.get(key) if manifest else None
        if current is None:
            state = ("missing: openMind was reinstalled since m1-ascend registered it; register again" if ours
                     else "not registered")
        elif current != ours:
            state = "present but not written by m1-ascend"
        elif current != wanted:
            state = f"registered by m1-ascend {manifest['m1_ascend_version']}, outdated: register again"
        else:
            state = f"registered by m1-ascend {manifest['m1_ascend_version']}"
        lines.append(f"{kind} {GROUP_NAME!r}: {state}")
    return lines
