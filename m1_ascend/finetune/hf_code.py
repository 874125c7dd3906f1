"""``export-hf-code``: make a checkpoint load this package's model through ``trust_remote_code``.

openMind (and anyone calling ``AutoModelForCausalLM.from_pretrained(dir, trust_remote_code=True)``)
loads the model from the ``.py`` files named by ``auto_map`` in ``config.json``. The official
files require flash-attn and a CUDA GPU; these two thin files instead subclass this package's
pure-PyTorch classes, which run on CPU and, with ``torch_npu``, on Ascend. They import only
names that exist in transformers 4.45 (openMind's pin) and 5.x. ``m1-ascend`` must be installed in
the environment that loads the checkpoint. Files that were there before are kept as ``*.bak``.
"""

from __future__ import annotations

import json
from pathlib import Path

MARKER = "Written by `m1-ascend export-hf-code`"
CONFIG_FILE = "configuration_baichuan.py"
MODELING_FILE = "modeling_baichuan.py"
AUTO_MAP = {
    "AutoConfig": "configuration_baichuan.BaichuanM1Config",
    "AutoModelForCausalLM": "modeling_baichuan.BaichuanM1ForCausalLM",
}

CONFIGURATION_SOURCE = f'''"""Baichuan-M1 configuration for trust_remote_code loaders (openMind, transformers >= 4.45).

{MARKER}: the implementation is the m1-ascend package,
which must be installed where this checkpoint is loaded.
"""

from m1_ascend.config import BaichuanM1Config as _M1Config


class BaichuanM1Config(_M1Config):
    model_type = "baichuan_m1"

    # An explicit __init__: transformers 5 rebuilds subclasses without one as dataclasses,
    # which would skip the parent's field handling and validation.
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
'''

MODELING_SOURCE = f'''"""Baichuan-M1 for trust_remote_code loaders: pure PyTorch, no flash-attn, runs on CPU and Ascend NPU.

{MARKER}: the implementation is the m1-ascend package,
which must be installed where this checkpoint is loaded.
"""

from m1_ascend.modeling import BaichuanM1ForCausalLM as _M1ForCausalLM

from .configuration_baichuan import BaichuanM1Config


class BaichuanM1ForCausalLM(_M1ForCausalLM):
    config_class = BaichuanM1Config
'''


def _write(path: Path, source: str) -> bool:
    """Write ``source``; keep a foreign file of the same name as ``.bak``. True when something changed."""
    if path.exists():
        current = path.read_text(encoding="utf-8")
        if current == source:
            return False
        if MARKER not in current:
            path.replace(path.with_name(path.name + ".bak"))
    path.write_text(source, encoding="utf-8")
    return True


def export_hf_code(checkpoint_dir: str | Path) -> list[str]:
    """Write the thin files and ``auto_map``; returns the names of the files that changed."""
    directory = Path(checkpoint_dir)
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{directory}: no config.json (not a checkpoint directory)")
    config = json.loads(config_path.read_text(encoding="utf-8"))
    if config.get("model_type") != "baichuan_m1":
        raise ValueError(f"{config_path}: model_type is {config.get('model_type')!r}, not 'baichuan_m1'")
    changed = [name for name, source in ((CONFIG_FILE, CONFIGURATION_SOURCE), (MODELING_FILE, MODELING_SOURCE))
               if _write(directory / name, source)]
    if config.get("auto_map") != AUTO_MAP:  # official entries point into the replaced files: drop them all
        config["auto_map"] = dict(AUTO_MAP)
        config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        changed.append("config.json")
    return changed
