"""Supervised fine-tuning data: alpaca / sharegpt JSON(L) -> Baichuan-M1 chat tokens with loss masks.

Datasets are found the openMind way: ``dataset`` names entries of the ``custom_dataset_info``
JSON files (``local_path`` directory + ``file_name``, ``formatting``, ``columns``, ``tags``,
``num_samples``), paths read from the current directory as openMind reads them. Every record
becomes the token sequence openMind 1.0.0 builds with the registered ``baichuan_m1`` template
(``openmind_template``): the tokenizer's chat layout (architecture.md §5, ``<B_SYS>system<C_Q>
user<C_A>answer``), the default system prompt where a record has none, EOS after every answer,
and openMind's split of ``cutoff_len`` between each question and its answer. Only answers and
their EOS are learned; everything else is labelled -100. A malformed record stops the run with
its file and line (JSONL) or record index (JSON): silently dropping data would change what a
department's model learns without anyone noticing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from .openmind_schema import DATASET_INFO_KEYS
from .openmind_template import DEFAULT_SYSTEM_PROMPT

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100
DATA_SUFFIXES = (".json", ".jsonl")

ALPACA_COLUMNS = {"prompt": "instruction", "query": "input", "response": "output", "history": None, "system": None}
SHAREGPT_COLUMNS = {"messages": "conversations", "system": None}
SHAREGPT_TAGS = {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt",
                 "system_tag": "system"}


class DatasetError(ValueError):
    """A dataset cannot be used; the message says which file, line or record, and why."""


class ChatTokenizer(Protocol):
    """The part of ``m1_ascend.tokenizer.M1Tokenizer`` the data pipeline needs."""

    eos_token_id: int

    def apply_chat_template(self, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> list[int]: ...


@dataclass(frozen=True)
class DatasetSpec:
    """One ``custom_dataset_info`` entry, resolved to local files."""

    name: str
    files: tuple[Path, ...]
    formatting: str
    columns: dict[str, str | None]
    tags: dict[str, str]
    num_samples: int | None


@dataclass
class Example:
    input_ids: list[int]
    labels: list[int]
    source: str  # "file.jsonl:12" or "file.json record 3": where the record came from


@dataclass
class SupervisedDataset(torch.utils.data.Dataset):
    """Tokenized examples plus what preprocessing did to them."""

    examples: list[Example]
    truncated: int = 0
    dropped: list[str] = field(default_factory=list)  # sources with no answer token left after cutoff_len
    own_system: list[str] = field(default_factory=list)  # sources with their own system prompt (openMind drops it)

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        ex = self.examples[index]
        return {"input_ids": ex.input_ids, "labels": ex.labels}

    def num_tokens(self) -> int:
        return sum(len(ex.input_ids) for ex in self.examples)


# ---------------------------------------------------------------- dataset_info resolution

def _load_dataset_info(paths: Sequence[str]) -> dict[str, tuple[dict[str, Any], Path]]:
    """Merge the ``custom_dataset_info`` files; each entry remembers the file it came from."""
    entries: dict[str, tuple[dict[str, Any], Path]] = {}
    for raw in paths:
        path = Path(raw).expanduser()
        if not path.is_file():
            raise DatasetError(f"custom_dataset_info file {path} not found")
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None
        if not isinstance(info, dict):
            raise DatasetError(f"{path}: expected a JSON object mapping dataset names to entries")
        for name, entry in info.items():
            if not isinstance(entry, dict):
                raise DatasetError(f"{path}: entry {name!r} must be a JSON object")
            entries[name] = (entry, path)
    return entries


def _data_files_in(local: Path, info_path: Path, name: str) -> tuple[Path, ...]:
    if local.is_dir():
        files = tuple(sorted(p for p in local.iterdir() if p.suffix in DATA_SUFFIXES))
        if not files:
            raise DatasetError(f"{info_path}: dataset {name!r}: no .json/.jsonl files in {local}")
        return files
    if not local.is_file():
        raise DatasetError(f"{info_path}: dataset {name!r}: {local} does not exist")
    if local.suffix not in DATA_SUFFIXES:
        raise DatasetError(f"{info_path}: dataset {name!r}: {local.name} is not .json or .jsonl")
    return (local,)


def _data_files(entry: dict[str, Any], info_path: Path, name: str) -> tuple[Path, ...]:
    """openMind's form: ``local_path`` a directory, as given (absolute or from the current directory),
    ``file_name`` a file in it. The old m1-ascend form (a file, or a path next to the dataset_info
    file or with ``~``), which openmind-cli cannot read, still works with a deprecation warning."""
    if entry.get("hub_url") and not entry.get("local_path"):
        raise DatasetError(f"{info_path}: dataset {name!r} only has hub_url; nothing is downloaded here, "
                           "set local_path to a local directory (and file_name)")
    if not entry.get("local_path"):
        raise DatasetError(f"{info_path}: dataset {name!r} needs local_path")
    local, file_name = Path(entry["local_path"]), entry.get("file_name")
    if local.is_dir():
        return _data_files_in(local / file_name if file_name else local, info_path, name)
    legacy = local.expanduser()
    if not legacy.is_absolute() and not legacy.exists():
        legacy = info_path.parent / legacy
    if file_name:
        legacy = legacy / file_name if legacy.is_dir() else legacy.parent / file_name
    if not legacy.exists():
        raise DatasetError(f"{info_path}: dataset {name!r}: local_path {entry['local_path']!r} is not a directory "
                           "(openMind reads local_path as a directory, from the current directory, and file_name in it)")
    files = _data_files_in(legacy, info_path, name)
    directory = (legacy if legacy.is_dir() else legacy.parent).resolve()
    if directory.is_relative_to(Path.cwd()):
        directory = directory.relative_to(Path.cwd())
    suggestion = {"local_path": str(directory), **({"file_name": legacy.name} if legacy.is_file() else {})}
    logger.warning("%s: dataset %r: local_path %r is the old m1-ascend form, which openmind-cli cannot read "
                   "(deprecated); write %s", info_path, name, entry["local_path"], json.dumps(suggestion))
    return files


def resolve_datasets(dataset: str, custom_dataset_info: str | None) -> list[DatasetSpec]:
    """Turn the recipe's ``dataset`` names into local files through ``custom_dataset_info``."""
    info = _load_dataset_info([p.strip() for p in (custom_dataset_info or "").split(",") if p.strip()])
    specs = []
    for name in (n.strip() for n in dataset.split(",") if n.strip()):
        if name not in info:
            raise DatasetError(f"dataset {name!r} is not defined in custom_dataset_info "
                               f"({', '.join(sorted(info)) or 'no entries'}); openMind's built-in datasets are "
                               "downloaded from the hub, which m1-ascend finetune never does")
        entry, path = info[name]
        unknown = sorted(set(entry) - DATASET_INFO_KEYS)
        if unknown:
            raise DatasetError(f"{path}: dataset {name!r} has unknown keys {unknown}")
        formatting = entry.get("formatting", "alpaca")
        if formatting not in ("alpaca", "sharegpt"):
            raise DatasetError(f"{path}: dataset {name!r}: formatting must be alpaca or sharegpt, got {formatting!r}")
        if entry.get("split", "train") != "train" or entry.get("subset") or entry.get("folder"):
            raise DatasetError(f"{path}: dataset {name!r}: split/subset/folder select hub data; local files are "
                               "read whole")
        defaults = ALPACA_COLUMNS if formatting == "alpaca" else SHAREGPT_COLUMNS
        num_samples = entry.get("num_samples")
        specs.append(DatasetSpec(
            name=name,
            files=_data_files(entry, path, name),
            formatting=formatting,
            columns={**defaults, **(entry.get("columns") or {})},
            tags={**SHAREGPT_TAGS, **(entry.get("tags") or {})},
            num_samples=int(num_samples) if num_samples is not None else None,
        ))
    return specs


# ---------------------------------------------------------------- records -> conversations

def read_records(path: Path) -> Iterator[tuple[str, Any]]:
    """Yield (location, record) for a JSON array file or a JSON-lines file."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        for lineno, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    yield f"{path}:{lineno}", json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DatasetError(f"{path}:{lineno}: invalid JSON ({exc.msg})") from None
        return
    try:
        records = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None
    if not isinstance(records, list):
        raise DatasetError(f"{path}: a .json dataset must be a JSON array of records")
    for index, record in enumerate(records):
        yield f"{path} record {index}", record


def _text(record: dict[str, Any], column: str | None, where: str, required: bool) -> str:
    value = record.get(column) if column else None
    if value is None or value == "":
        if required:
            raise DatasetError(f"{where}: missing or empty '{column}'")
        return ""
    if not isinstance(value, str):
        raise DatasetError(f"{where}: '{column}' must be a string, got {type(value).__name__}")
    return value


def alpaca_messages(record: dict[str, Any], columns: dict[str, str | None], where: str) -> list[dict[str, str]]:
    """instruction (+ input on a new line) -> user, output -> assistant, after history and system."""
    messages = []
    system = _text(record, columns.get("system"), where, required=False)
    if system:
        messages.append({"role": "system", "content": system})
    history = record.get(columns["history"]) if columns.get("history") else None
    for turn_index, turn in enumerate(history or []):
        ok = isinstance(turn, (list, tuple)) and len(turn) == 2 and all(isinstance(t, str) and t for t in turn)
        if not ok:
            raise DatasetError(f"{where}: history[{turn_index}] must be a [user, assistant] pair of non-empty strings")
        messages += [{"role": "user", "content": turn[0]}, {"role": "assistant", "content": turn[1]}]
    prompt = _text(record, columns["prompt"], where, required=True)
    query = _text(record, columns.get("query"), where, required=False)
    messages.append({"role": "user", "content": f"{prompt}\n{query}" if query else prompt})
    messages.append({"role": "assistant", "content": _text(record, columns["response"], where, required=True)})
    return messages


def sharegpt_messages(record: dict[str, Any], columns: dict[str, str | None], tags: dict[str, str],
                      where: str) -> list[dict[str, str]]:
    """A list of {from, value} turns: optional system first, then user/assistant alternating."""
    turns = record.get(columns["messages"] or "")
    if not isinstance(turns, list) or not turns:
        raise DatasetError(f"{where}: '{columns['messages']}' must be a non-empty list of turns")
    roles = {tags["user_tag"]: "user", tags["assistant_tag"]: "assistant", tags["system_tag"]: "system"}
    messages = []
    system = _text(record, columns.get("system"), where, required=False)
    if system:
        messages.append({"role": "system", "content": system})
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict):
            raise DatasetError(f"{where}: turn {i} must be an object")
        role = roles.get(turn.get(tags["role_tag"]))
        if role is None:
            raise DatasetError(f"{where}: turn {i} has {tags['role_tag']}={turn.get(tags['role_tag'])!r}; "
                               f"expected one of {sorted(roles)}")
        content = turn.get(tags["content_tag"])
        if not isinstance(content, str) or not content:
            raise DatasetError(f"{where}: turn {i} has no text in '{tags['content_tag']}'")
        if role == "system" and (i != 0 or messages):
            raise DatasetError(f"{where}: turn {i}: a system turn may only come first")
        messages.append({"role": role, "content": content})
    dialogue = [m["role"] for m in messages if m["role"] != "system"]
    if any(role != ("user", "assistant")[k % 2] for k, role in enumerate(dialogue)):
        raise DatasetError(f"{where}: turns must alternate user, assistant starting with user")
    if not dialogue or dialogue[-1] != "assistant":
        raise DatasetError(f"{where}: the conversation must end with an assistant turn")
    return messages


# ---------------------------------------------------------------- conversations -> tokens

def conversation_pairs(tokenizer: ChatTokenizer, messages: list[dict[str, str]]) -> list[tuple[list[int], list[int]]]:
    """(prompt, answer) ids per assistant turn: the tokens since the previous answer, then the answer and EOS.

    Each span is cut from the chat template's own rendering (up to the generation prompt, up to
    the end of the answer), so the split follows the template exactly.
    """
    pairs, done = [], 0
    for i, message in enumerate(messages):
        if message["role"] == "assistant":
            prompt = tokenizer.apply_chat_template(messages[:i], add_generation_prompt=True)
            full = tokenizer.apply_chat_template(messages[: i + 1], add_generation_prompt=False)
            pairs.append((list(prompt[done:]), list(full[len(prompt):]) + [tokenizer.eos_token_id]))
            done = len(full)
    return pairs


def fit_pairs(pairs: list[tuple[list[int], list[int]]], cutoff_len: int,
              reserved_label_len: int = 1) -> list[tuple[list[int], list[int]]]:
    """openMind 1.0.0's truncation (``Template._make_pairs``), so both trainers cut the same tokens.

    Each pair gets the room left, split between prompt and answer in proportion to their lengths
    (at least ``reserved_label_len`` answer tokens); both keep their heads; once ``cutoff_len`` is
    used up, later pairs are dropped.
    """
    kept, total = [], 0
    for source, target in pairs:
        if total >= cutoff_len:
            break
        room = cutoff_len - total
        # The same float expression as openMind's _infer_max_len, so the rounding matches too.
        max_target = max(int(room * (len(target) / (len(source) + len(target)))), reserved_label_len)
        max_source = room - min(max_target, len(target))
        source, target = source[:max_source], target[:max_target]
        total += len(source) + len(target)
        kept.append((source, target))
    return kept


def tokenize_conversation(tokenizer: ChatTokenizer, messages: list[dict[str, str]], cutoff_len: int,
                          source: str = "", reserved_label_len: int = 1) -> tuple[Example, bool]:
    """Chat-template tokens, labelled only on answers and their EOS. Returns (example, was_truncated)."""
    pairs = conversation_pairs(tokenizer, messages)
    fitted = fit_pairs(pairs, cutoff_len, reserved_label_len)
    input_ids: list[int] = []
    labels: list[int] = []
    for prompt, answer in fitted:
        input_ids += prompt + answer
        labels += [IGNORE_INDEX] * len(prompt) + answer
    return Example(input_ids, labels, source), fitted != pairs


def with_system_prompt(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    """The default system prompt first, where the record has none (openMind's template always adds it)."""
    if messages[0]["role"] == "system":
        return messages
    return [{"role": "system", "content": DEFAULT_SYSTEM_PROMPT}, *messages]


def build_dataset(specs: Sequence[DatasetSpec], tokenizer: ChatTokenizer, cutoff_len: int,
                  reserved_label_len: int = 1) -> SupervisedDataset:
    """Read, validate and tokenize every record of every dataset, in order."""
    dataset = SupervisedDataset(examples=[])
    for spec in specs:
        taken = 0
        for path in spec.files:
            for where, record in read_records(path):
                if spec.num_samples is not None and taken >= spec.num_samples:
                    break
                if not isinstance(record, dict):
                    raise DatasetError(f"{where}: expected a JSON object, got {type(record).__name__}")
                if spec.formatting == "alpaca":
                    messages = alpaca_messages(record, spec.columns, where)
                else:
                    messages = sharegpt_messages(record, spec.columns, spec.tags, where)
                if messages[0]["role"] == "system" and messages[0]["content"] != DEFAULT_SYSTEM_PROMPT:
                    dataset.own_system.append(where)
                example, truncated = tokenize_conversation(tokenizer, with_system_prompt(messages), cutoff_len, where,
                                                           reserved_label_len)
                taken += 1
                dataset.truncated += truncated
                if all(label == IGNORE_INDEX for label in example.labels):
                    dataset.dropped.append(where)
                else:
                    dataset.examples.append(example)
    if dataset.dropped:
        logger.warning("%d record(s) have no answer token within cutoff_len=%d and are not trained on (first: %s)",
                       len(dataset.dropped), cutoff_len, dataset.dropped[0])
    if dataset.own_system:
        logger.warning("%d record(s) set their own system prompt, which m1-ascend finetune trains with; openmind-cli "
                       "1.0.0 ignores it and uses %r instead (first: %s)", len(dataset.own_system),
                       DEFAULT_SYSTEM_PROMPT, dataset.own_system[0])
    if not dataset.examples:
        raise DatasetError("no trainable examples: every record is empty or cut off before its answer")
    return dataset


@dataclass(frozen=True)
class PaddingCollator:
    """Right-pads a batch; pads are masked out of attention and (optionally) out of the loss.

    Lengths are rounded up to a multiple of 8 like openMind's collator, or padded to
    ``max_length`` when the recipe sets it.
    """

    pad_token_id: int
    max_length: int | None = None
    ignore_pad_token_for_loss: bool = True
    multiple_of: int = 8

    def __call__(self, features: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        longest = max(len(f["input_ids"]) for f in features)
        length = -(-longest // self.multiple_of) * self.multiple_of
        if self.max_length:
            length = max(length, self.max_length)
        label_pad = IGNORE_INDEX if self.ignore_pad_token_for_loss else self.pad_token_id
        input_ids = torch.full((len(features), length), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(features), length), label_pad, dtype=torch.long)
        attention_mask = torch.zeros((len(features), length), dtype=torch.long)
        for row, f in enumerate(features):
            n = len(f["input_ids"])
            input_ids[row, :n] = torch.tensor(f["input_ids"])
            labels[row, :n] = torch.tensor(f["labels"])
            attention_mask[row, :n] = 1
        return {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}
