"""Fine-tuning recipes: openMind ``train`` YAML, loaded, overridden and checked before any work starts.

One file serves both ``openmind-cli train`` on an Ascend host and ``m1-ascend finetune`` here, so
every key is checked against openMind's schema (``openmind_schema``); a typo fails at once with
the key, its line and the closest valid names, instead of after the model has loaded. A few
keys only ``m1-ascend finetune`` understands (``EXTENSION_KEYS``); openmind-cli would reject
them, so they belong in ``--set`` or in recipes that are never handed to openmind-cli.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .openmind_schema import OPENMIND_KEYS, TRAINING_ARGUMENTS_445, is_openmind_key

LORA_TARGETS = ("W_pack", "o_proj", "gate_proj", "up_proj", "down_proj")

# m1-ascend-only keys: dynamic update skipping (openmind.md §6.3), which openMind lacks.
EXTENSION_KEYS: dict[str, tuple[type, ...]] = {
    "grad_skip_factor": (int, float),  # skip a step when its grad norm > factor x running average; 0 = off
    "grad_skip_ema_beta": (float,),  # smoothing of the running average of accepted grad norms
    "grad_skip_warmup_steps": (int,),  # steps that only feed the average before skipping may start
    "grad_skip_max_consecutive": (int,),  # stop with an error after this many skips in a row
}

# openMind keys this runner cannot honour: key -> (value that is fine, why anything else is not).
UNSUPPORTED_VALUES: dict[str, tuple[Any, str]] = {
    "model_id": (None, "model_id resolves through openMind's registry and downloads; use model_name_or_path "
                       "with a local checkpoint directory"),
    "load_in_4bit": (False, "QLoRA (bitsandbytes 4-bit) is not supported"),
    "resize_vocab": (False, "resizing the vocabulary is not supported"),
    "new_special_tokens": (None, "adding special tokens is not supported"),
    "use_gradient_checkpointing": (False, "the Baichuan-M1 implementation has no gradient checkpointing yet"),
    "adapter_models": (None, "starting from existing adapters is not supported; merge them first (m1-ascend export)"),
    "subset_name": (None, "local JSON datasets have no subsets"),
    "gradient_checkpointing": (False, "the Baichuan-M1 implementation has no gradient checkpointing yet"),
}

# Paths openMind reads as given (from the current directory, no '~'); this runner expands '~' too.
PATH_KEYS = ("model_name_or_path", "custom_dataset_info", "output_dir")

# openMind/transformers-4.45 keys that newer transformers dropped, and how this runner honours them.
TRANSLATED_KEYS = {"warmup_ratio", "overwrite_output_dir", "save_safetensors"}


class RecipeError(ValueError):
    """The recipe cannot run; the message names the key (and its line) and what to change."""


@dataclass(frozen=True)
class Recipe:
    """A validated recipe: the YAML values after ``--set`` overrides."""

    values: dict[str, Any]
    source: str = "<recipe>"
    lines: dict[str, int] = field(default_factory=dict)

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    @property
    def lora_rank(self) -> int:
        return int(self.get("lora_rank", 8))

    @property
    def lora_alpha(self) -> float:
        alpha = self.get("lora_alpha")
        return float(2 * self.lora_rank if alpha is None else alpha)  # openMind's default: 2 x rank

    @property
    def lora_dropout(self) -> float:
        return float(self.get("lora_dropout", 0.0))

    @property
    def lora_target_modules(self) -> list[str]:
        return parse_target_modules(self.get("lora_target_modules"))

    @property
    def cutoff_len(self) -> int:
        return int(self.get("cutoff_len", 1024))

    @property
    def reserved_label_len(self) -> int:
        return int(self.get("reserved_label_len", 1))

    def extension_keys(self) -> list[str]:
        """Keys openmind-cli would reject (m1-ascend-only options)."""
        return [k for k in self.values if not is_openmind_key(k)]

    def openmind_notes(self) -> list[str]:
        """What would stop ``openmind-cli train`` on this recipe although ``m1-ascend finetune`` runs it."""
        notes = []
        if self.extension_keys():
            notes.append(f"{', '.join(self.extension_keys())}: m1-ascend-only keys; openmind-cli would reject them")
        for key in PATH_KEYS:
            if any(part.strip().startswith("~") for part in str(self.get(key) or "").split(",")):
                notes.append(f"{key}: openmind-cli does not expand '~' (it would look the path up on its model hub "
                             "or create a folder named '~'); write an absolute path")
        if self.get("trust_remote_code") is not True:
            notes.append("trust_remote_code is not true: openmind-cli cannot load Baichuan-M1's code without it")
        return notes

    def training_arguments(self, available: set[str]) -> dict[str, Any]:
        """The transformers ``TrainingArguments`` keyword arguments, for the installed transformers.

        ``available`` holds the installed ``TrainingArguments`` field names; keys that only
        transformers 4.45 knows are translated where the meaning survives, rejected otherwise.
        """
        kwargs: dict[str, Any] = {}
        for key, value in self.values.items():
            if key not in TRAINING_ARGUMENTS_445 or key in OPENMIND_KEYS:
                continue
            if key in available:
                kwargs[key] = value
            elif key not in TRANSLATED_KEYS:
                raise self.error(key, "is a transformers 4.45 TrainingArguments key that the installed transformers "
                                      "no longer accepts; remove it for m1-ascend finetune")
        # overwrite_output_dir is handled by the runner; save_safetensors is always on in newer transformers.
        if "warmup_ratio" in self.values and "warmup_ratio" not in available:
            if self.values.get("warmup_steps"):
                raise self.error("warmup_ratio", "and warmup_steps are both set; keep one")
            kwargs["warmup_steps"] = float(self.values["warmup_ratio"])  # newer transformers: a float < 1 is a ratio
        return kwargs

    def error(self, key: str, message: str) -> RecipeError:
        where = f"{self.source}:{self.lines[key]}" if key in self.lines else self.source
        return RecipeError(f"{where}: '{key}' {message}")


def parse_target_modules(value: Any) -> list[str]:
    """openMind's ``lora_target_modules``: a comma list, ``all``, or unset (= all linears)."""
    if value is None or str(value).strip() == "all":
        return list(LORA_TARGETS)
    names = [name.strip() for name in str(value).split(",") if name.strip()]
    bad = [name for name in names if name not in LORA_TARGETS]
    if bad or not names:
        raise RecipeError(f"{', '.join(bad) or repr(value)} are not LoRA targets of Baichuan-M1; "
                          f"choose from {','.join(LORA_TARGETS)} or 'all' (conv_k/conv_v are not Linear layers)")
    return names


def parse_override(text: str) -> tuple[str, Any]:
    """``key=value`` with a YAML value (``3``, ``true``, ``{a: 1}``); ``a.b=v`` sets one mapping entry."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise RecipeError(f"--set {text!r}: expected key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise RecipeError(f"--set {text!r}: value is not valid YAML ({exc.problem})") from None
    return key.strip(), value


def apply_overrides(values: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    merged = dict(values)
    for text in overrides:
        key, value = parse_override(text)
        top, _, sub = key.partition(".")
        if sub:
            current = merged.get(top) or {}
            if not isinstance(current, dict):
                raise RecipeError(f"--set {text!r}: '{top}' is not a mapping")
            merged[top] = {**current, sub: value}
        else:
            merged[key] = value
    return merged


def _key_lines(text: str) -> dict[str, int]:
    """Line number (1-based) of each top-level key, for error messages."""
    node = yaml.compose(text)
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {k.value: k.start_mark.line + 1 for k, _ in node.value if isinstance(k, yaml.ScalarNode)}


def read_recipe_file(path: str | Path) -> tuple[dict[str, Any], dict[str, int]]:
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"{path}: recipe file not found")
    text = path.read_text(encoding="utf-8")
    try:
        values = yaml.safe_load(text)
        lines = _key_lines(text)
    except yaml.YAMLError as exc:
        raise RecipeError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(values, dict):
        raise RecipeError(f"{path}: a recipe must be a YAML mapping of key: value")
    return values, lines


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read, override and validate a recipe; raises ``RecipeError`` naming the first problem."""
    values, lines = read_recipe_file(path)
    recipe = Recipe(apply_overrides(values, overrides or []), str(path), lines)
    validate(recipe)
    return recipe


def _check_type(recipe: Recipe, key: str, types: tuple[type, ...]) -> None:
    value = recipe.values[key]
    ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
    if not ok:
        names = " or ".join("null" if t is type(None) else t.__name__ for t in types)
        raise recipe.error(key, f"must be {names}, got {value!r}")


def validate(recipe: Recipe) -> None:
    """Reject unknown keys, wrong types and settings this runner cannot honour."""
    known = sorted({*OPENMIND_KEYS, *TRAINING_ARGUMENTS_445, *EXTENSION_KEYS})
    for key in recipe.values:
        if not (is_openmind_key(key) or key in EXTENSION_KEYS):
            close = difflib.get_close_matches(key, known, n=3, cutoff=0.6)
            hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
            raise recipe.error(key, "is not an openMind train key nor a transformers 4.45 TrainingArguments field"
                                    f"{hint}; openmind-cli would reject it too")
        types = OPENMIND_KEYS.get(key) or EXTENSION_KEYS.get(key)
        if types:
            _check_type(recipe, key, types)
    for key, (fine, reason) in UNSUPPORTED_VALUES.items():
        if key in recipe.values and recipe.values[key] not in (fine, None):
            raise recipe.error(key, f"is not supported by m1-ascend finetune: {reason}")
    _validate_semantics(recipe)


def _validate_semantics(recipe: Recipe) -> None:
    def require(key: str, ok: bool, message: str) -> None:
        if not ok:
            raise recipe.error(key, message)

    v = recipe.values
    require("stage", v.get("stage", "sft") == "sft", f"must be 'sft' (the only stage openMind runs), got {v.get('stage')!r}")
    require("finetuning_type", v.get("finetuning_type") == "lora",
            "must be set to 'lora' explicitly (openMind's default is 'full'; m1-ascend finetune runs LoRA)")
    require("do_train", v.get("do_train") is True, "must be true (openMind only trains when do_train is true)")
    for key in ("model_name_or_path", "dataset", "output_dir"):
        require(key, bool(v.get(key)), "is required")
    require("lora_rank", recipe.lora_rank > 0, "must be positive")
    require("lora_dropout", 0.0 <= recipe.lora_dropout < 1.0, "must be in [0, 1)")
    require("cutoff_len", recipe.cutoff_len > 1, "must be at least 2 tokens")
    require("split", v.get("split", "train") == "train", "only 'train' exists in local JSON datasets")
    try:
        parse_target_modules(v.get("lora_target_modules"))
    except RecipeError as exc:
        raise recipe.error("lora_target_modules", f"lists {exc}") from None
    if v.get("lr_scheduler_type") == "warmup_stable_decay":
        kwargs = v.get("lr_scheduler_kwargs") or {}
        require("lr_scheduler_kwargs", isinstance(kwargs, dict), "must be a mapping")
        missing = [k for k in ("num_stable_steps", "num_decay_steps") if k not in kwargs]
        require("lr_scheduler_kwargs", not missing,
                f"needs {' and '.join(missing)} for warmup_stable_decay (transformers 4.45 under openMind "
                "requires both num_stable_steps and num_decay_steps)")
    if float(v.get("grad_skip_factor", 0) or 0):
        require("grad_skip_factor", float(v["grad_skip_factor"]) > 1.0, "must be > 1 (or 0 to turn skipping off)")


def training_argument_fields() -> set[str]:
    """Field names of the installed transformers' ``Seq2SeqTrainingArguments``."""
    from transformers import Seq2SeqTrainingArguments

    return {f.name for f in dataclasses.fields(Seq2SeqTrainingArguments) if f.init}
