"""``export-hf-code``: make a checkpoint load this package's model and tokenizer through ``trust_remote_code``.

openMind (and anyone calling ``AutoModelForCausalLM.from_pretrained(dir, trust_remote_code=True)``)
loads the model from the ``.py`` files named by ``auto_map`` in ``config.json``, and the tokenizer
through ``AutoTokenizer``, which cannot build m1-ascend's own tokenizer class. The official model
files require flash-attn and a CUDA GPU; the two thin files written here instead subclass this
package's pure-PyTorch classes, which run on CPU and, with ``torch_npu``, on Ascend. They import only
names that exist in transformers 4.45 (openMind's pin) and 5.x; ``m1-ascend`` must be installed in
the environment that loads the checkpoint. The tokenizer file is self-contained
(``m1_ascend/tokenization_baichuan_m1.py``, copied as is), and ``tokenizer_config.json`` gets its
``auto_map`` entry and a pad token, which openMind's collator needs. Files of the same names that
were there before are kept as ``*.bak``.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

MARKER = "m1-ascend export-hf-code"
CONFIG_FILE = "configuration_baichuan.py"
MODELING_FILE = "modeling_baichuan.py"
TOKENIZER_MODULE = "tokenization_baichuan_m1"
TOKENIZER_CLASS = "BaichuanM1Tokenizer"
AUTO_MAP = {
    "AutoConfig": "configuration_baichuan.BaichuanM1Config",
    "AutoModelForCausalLM": "modeling_baichuan.BaichuanM1ForCausalLM",
}
TOKENIZER_AUTO_MAP = {"AutoTokenizer": [f"{TOKENIZER_MODULE}.{TOKENIZER_CLASS}", None]}

CONFIGURATION_SOURCE = f'''"""Baichuan-M1 configuration for trust_remote_code loaders (openMind, transformers >= 4.45).

Written by `{MARKER}`: the implementation is the m1-ascend package,
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

Written by `{MARKER}`: the implementation is the m1-ascend package,
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


def tokenizer_source() -> str:
    """The self-contained tokenizer file shipped into checkpoints (it names this command, so it is ours)."""
    return resources.files("m1_ascend").joinpath(f"{TOKENIZER_MODULE}.py").read_text(encoding="utf-8")


def _read_json(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return data


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _pad_token(tok_config: dict[str, Any], pad_token_id: Any) -> str:
    """The text of ``config.json``'s pad id among the added tokens, else the unk token (id 0 in Baichuan-M1)."""
    entry = (tok_config.get("added_tokens_decoder") or {}).get(str(pad_token_id))
    if isinstance(entry, dict) and isinstance(entry.get("content"), str):
        return entry["content"]
    unk = tok_config.get("unk_token", "<unk>")
    return unk.get("content", "<unk>") if isinstance(unk, dict) else str(unk)


def export_hf_code(checkpoint_dir: str | Path) -> list[str]:
    """Write the thin model files, the tokenizer file and their ``auto_map``; returns the names that changed."""
    directory = Path(checkpoint_dir)
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{directory}: no config.json (not a checkpoint directory)")
    config = _read_json(config_path)
    if config.get("model_type") != "baichuan_m1":
        raise ValueError(f"{config_path}: model_type is {config.get('model_type')!r}, not 'baichuan_m1'")
    tok_config_path = directory / "tokenizer_config.json"
    if not (directory / "tokenizer.model").is_file():
        raise FileNotFoundError(f"{directory}: no tokenizer.model (the SentencePiece model the tokenizer file reads)")
    sources = ((CONFIG_FILE, CONFIGURATION_SOURCE), (MODELING_FILE, MODELING_SOURCE),
               (f"{TOKENIZER_MODULE}.py", tokenizer_source()))
    changed = [name for name, source in sources if _write(directory / name, source)]
    if config.get("auto_map") != AUTO_MAP:  # official entries point into the replaced files: drop them all
        config["auto_map"] = dict(AUTO_MAP)
        _write_json(config_path, config)
        changed.append("config.json")
    tok_config = _read_json(tok_config_path) if tok_config_path.is_file() else {}
    wanted = {"tokenizer_class": TOKENIZER_CLASS,
              "auto_map": {**(tok_config.get("auto_map") or {}), **TOKENIZER_AUTO_MAP},
              "pad_token": tok_config.get("pad_token") or _pad_token(tok_config, config.get("pad_token_id", 0))}
    if any(tok_config.get(key) != value for key, value in wanted.items()):
        _write_json(tok_config_path, {**tok_config, **wanted})
        changed.append("tokenizer_config.json")
    return changed
