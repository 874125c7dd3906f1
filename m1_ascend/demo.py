"""The embedded demo checkpoint: a small Baichuan-M1 with its own tokenizer, built locally.

No weights or tokenizer can be downloaded, so the package builds a stand-in in the official
layout (sharded safetensors + index + ``config.json`` + ``tokenizer.model`` +
``tokenizer_config.json`` + ``generation_config.json``): the ``demo`` preset geometry, a
SentencePiece BPE tokenizer trained on ``demo_corpus`` with the role tokens at the real ids
71..76, and a short training run on the corpus in the chat layout so greedy replies are words.
It also carries what ``export-hf-code`` writes (``trust_remote_code`` model and tokenizer files),
so transformers' Auto classes and openMind load it like a prepared real checkpoint.
Everything is seeded, so a build is reproducible on the same machine.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import io
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import sentencepiece as spm
import torch

from .checkpoint import save_checkpoint
from .config import preset_config
from .demo_corpus import DEFAULT_SYSTEM_PROMPT, QA_PAIRS, corpus_lines
from .finetune.hf_code import export_hf_code
from .modeling import BaichuanM1ForCausalLM
from .tokenizer import DEFAULT_CHAT_TEMPLATE, DEFAULT_ROLE_TOKEN_IDS, TOKENIZER_CONFIG_FILE, TOKENIZER_FILE, M1Tokenizer
from .weights import write_manifest

DEMO_ENV = "M1_ASCEND_DEMO_DIR"
# Bump when the build recipe changes, so existing demo directories are rebuilt.
DEMO_FORMAT = 2
DEMO_MARKER = "m1_ascend_demo.json"
DEMO_TRAIN_STEPS = 100
DEMO_SHARD_SIZE = "5MB"
DEMO_VOCAB = 2048  # == the demo preset's vocab_size, so every model id decodes
TEST_VOCAB = 320  # == the tiny preset's vocab_size
UNK_ID, BOS_ID, EOS_ID = 0, 1, 2

Progress = Callable[[str], None]


def default_demo_dir() -> Path:
    """``$M1_ASCEND_DEMO_DIR``, else ``~/.cache/m1-ascend/demo``."""
    env = os.environ.get(DEMO_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "m1-ascend" / "demo"


def write_tokenizer_files(directory: str | Path, vocab_size: int, byte_fallback: bool) -> Path:
    """Train the SentencePiece BPE tokenizer on the corpus; write it and its tokenizer_config.json.

    Ids 3..70 are reserved control pieces so the six role tokens land on 71..76, as in the real
    tokenizer. Control pieces are never produced by encoding text. The test tokenizer has no
    byte fallback: 256 byte pieces would not fit the tiny preset's vocabulary.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    first_role = min(DEFAULT_ROLE_TOKEN_IDS.values())
    reserved = [f"<reserved_{i}>" for i in range(EOS_ID + 1, first_role)]
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus_lines()), model_writer=model, model_type="bpe", vocab_size=vocab_size,
        control_symbols=reserved + list(DEFAULT_ROLE_TOKEN_IDS), byte_fallback=byte_fallback,
        character_coverage=1.0, split_digits=True, add_dummy_prefix=False, remove_extra_whitespaces=False,
        normalization_rule_name="identity", unk_id=UNK_ID, bos_id=BOS_ID, eos_id=EOS_ID, pad_id=-1,
        num_threads=1, minloglevel=2,
    )
    (directory / TOKENIZER_FILE).write_bytes(model.getvalue())
    specials = {UNK_ID: "<unk>", BOS_ID: "<s>", EOS_ID: "</s>"} | {i: t for t, i in DEFAULT_ROLE_TOKEN_IDS.items()}
    config = {
        "tokenizer_class": "M1Tokenizer",
        "add_bos_token": False,
        "add_eos_token": False,
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "added_tokens_decoder": {str(i): {"content": t, "special": True} for i, t in sorted(specials.items())},
        "chat_template": DEFAULT_CHAT_TEMPLATE,
    }
    (directory / TOKENIZER_CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return directory


def build_test_tokenizer_dir(directory: str | Path) -> Path:
    """Only the tokenizer files, with a vocabulary that fits the ``tiny`` preset (for tests)."""
    return write_tokenizer_files(directory, TEST_VOCAB, byte_fallback=False)


def _chat_examples(tokenizer: M1Tokenizer) -> list[tuple[list[int], int]]:
    """(ids, prompt length) per example: each pair with and without the default system prompt."""
    examples = []
    for question, answer in QA_PAIRS:
        for system in ([], [{"role": "system", "content": DEFAULT_SYSTEM_PROMPT}]):
            prompt = tokenizer.apply_chat_template([*system, {"role": "user", "content": question}])
            examples.append((prompt + tokenizer.encode(answer) + [tokenizer.eos_token_id], len(prompt)))
    return examples


def train_on_chats(model: BaichuanM1ForCausalLM, tokenizer: M1Tokenizer, steps: int,
                   progress: Progress) -> float:
    """Full-batch AdamW on the answers of the corpus chats; returns the last loss.

    Full batch in a fixed order: no sampling, so the result depends only on the seed.
    """
    examples = _chat_examples(tokenizer)
    length = max(len(ids) for ids, _ in examples)
    input_ids = torch.zeros(len(examples), length, dtype=torch.long)
    mask = torch.zeros_like(input_ids)
    labels = torch.full_like(input_ids, -100)
    for row, (ids, prompt_len) in enumerate(examples):
        input_ids[row, :len(ids)] = torch.tensor(ids)
        mask[row, :len(ids)] = 1
        labels[row, prompt_len:len(ids)] = torch.tensor(ids[prompt_len:])
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 - step / max(steps, 1))
    model.train()
    loss_value = 0.0
    for step in range(steps):
        loss = model(input_ids=input_ids, attention_mask=mask, labels=labels, use_cache=False).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        loss_value = loss.item()
        if step % 20 == 0 or step == steps - 1:
            progress(f"  step {step + 1}/{steps}: loss {loss_value:.3f}")
    model.eval()
    return loss_value


def _marker(seed: int, train_steps: int) -> dict[str, int]:
    return {"format": DEMO_FORMAT, "seed": seed, "train_steps": train_steps}


def is_complete(directory: Path, seed: int, train_steps: int) -> bool:
    """A finished build with this recipe (the marker is written last, inside the temp dir)."""
    try:
        marker = json.loads((directory / DEMO_MARKER).read_text())
    except (OSError, ValueError):
        return False
    return {k: marker.get(k) for k in ("format", "seed", "train_steps")} == _marker(seed, train_steps)


def build_demo_checkpoint(output_dir: str | Path | None = None, seed: int = 0, force: bool = False, *,
                          train_steps: int = DEMO_TRAIN_STEPS, progress: Progress | None = None) -> Path:
    """Build the demo checkpoint into ``output_dir`` (default ``default_demo_dir()``).

    Skips the build when the directory already holds a complete build with the same recipe
    (``force=True`` rebuilds). Builds into a temporary sibling directory and renames it, so an
    interrupted build never leaves a half-written checkpoint behind.
    """
    if train_steps < 0:
        raise ValueError(f"train_steps must be >= 0, got {train_steps}")
    target = Path(output_dir).expanduser() if output_dir is not None else default_demo_dir()
    report = progress or (lambda message: None)
    if not force and is_complete(target, seed, train_steps):  # no lock needed: works on a read-only cache
        report(f"demo checkpoint already complete at {target}")
        return target
    if target.exists() and any(target.iterdir()) and not (target / DEMO_MARKER).exists():
        raise ValueError(f"{target} is not empty and holds no demo build; refusing to overwrite it")
    target.parent.mkdir(parents=True, exist_ok=True)
    with _build_lock(target, report):
        if not force and is_complete(target, seed, train_steps):  # a concurrent build just finished it
            report(f"demo checkpoint already complete at {target}")
            return target
        _remove_stale_builds(target)
        _build(target, seed, train_steps, report)
    return target


def _remove_stale_builds(target: Path) -> None:
    """Staging and retired folders of ``target`` left by interrupted builds (a killed server, say).

    Called under the build lock: every build of ``target`` holds it while its folders exist, so
    none of these belongs to a live build.
    """
    for pattern in (f".{glob.escape(target.name)}.building-*", f".{glob.escape(target.name)}.old-*"):
        for leftover in target.parent.glob(pattern):
            shutil.rmtree(leftover, ignore_errors=True)


@contextlib.contextmanager
def _build_lock(target: Path, report: Progress) -> Iterator[None]:
    """An exclusive lock beside ``target``, so two processes never train the same demo twice."""
    with (target.parent / f".{target.name}.lock").open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            report(f"waiting for another process building {target}")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build(target: Path, seed: int, train_steps: int, report: Progress) -> None:
    """Build into a temporary sibling directory, then swap it in (under the build lock)."""
    staging = target.parent / f".{target.name}.building-{uuid.uuid4().hex[:8]}"
    start = time.perf_counter()
    try:
        report(f"training the demo tokenizer (vocab {DEMO_VOCAB})")
        write_tokenizer_files(staging, DEMO_VOCAB, byte_fallback=True)
        tokenizer = M1Tokenizer.from_pretrained(staging)
        config = preset_config("demo", pad_token_id=UNK_ID, bos_token_id=BOS_ID, eos_token_id=EOS_ID)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = BaichuanM1ForCausalLM(config)
            report(f"training the demo model ({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters, "
                   f"{train_steps} steps)")
            loss = train_on_chats(model, tokenizer, train_steps, report) if train_steps else None
        model.generation_config.eos_token_id = tokenizer.eos_token_id
        model.generation_config.pad_token_id = UNK_ID
        model.generation_config.bos_token_id = BOS_ID
        save_checkpoint(model, staging, max_shard_size=DEMO_SHARD_SIZE)
        export_hf_code(staging)
        marker = _marker(seed, train_steps) | {"final_loss": None if loss is None else round(loss, 4)}
        (staging / DEMO_MARKER).write_text(json.dumps(marker) + "\n")
        # The server verifies weights at start-up; the demo ships its manifest like a real install.
        write_manifest(staging, progress=False)
        if target.exists():
            retired = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
            target.rename(retired)
            shutil.rmtree(retired, ignore_errors=True)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    report(f"demo checkpoint written to {target} in {time.perf_counter() - start:.1f} s")


def ensure_demo_checkpoint() -> Path:
    """The default demo checkpoint, built on first use."""
    return build_demo_checkpoint()
