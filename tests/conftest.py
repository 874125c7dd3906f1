"""Session fixtures shared by every test: a tiny tokenizer and a tiny checkpoint in the official layout.

They are built once per session from the package's own code (nothing is downloaded). Treat
``tiny_model`` as read-only — load your own copy with ``load_checkpoint(tiny_model_dir)`` to
change its weights, dtype or kernel backend.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from m1_ascend.checkpoint import load_checkpoint, save_checkpoint
from m1_ascend.config import preset_config
from m1_ascend.demo import build_test_tokenizer_dir
from m1_ascend.modeling import BaichuanM1ForCausalLM
from m1_ascend.tokenizer import M1Tokenizer

TINY_SEED = 1234
# Small enough that the ~0.8 MB fp32 tiny model spreads over several shards, like the real one.
TINY_SHARD_SIZE = "200KB"


def build_tiny_model(seed: int = TINY_SEED) -> BaichuanM1ForCausalLM:
    """The ``tiny`` preset with deterministic random weights, without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return BaichuanM1ForCausalLM(preset_config("tiny")).eval()


@pytest.fixture(scope="session", autouse=True)
def single_cpu_thread() -> Iterator[None]:
    """Tiny models run many times faster on one thread than on two contended ones."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tokenizer.model`` + ``tokenizer_config.json`` with a vocabulary of 320 (the tiny preset's)."""
    return build_test_tokenizer_dir(tmp_path_factory.mktemp("tokenizer"))


@pytest.fixture(scope="session")
def tokenizer(tokenizer_dir: Path) -> M1Tokenizer:
    """The tiny tokenizer (server tests override it with the served checkpoint's own)."""
    return M1Tokenizer.from_pretrained(tokenizer_dir)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer_dir: Path) -> Path:
    """The tiny model as sharded safetensors + index + config.json, with the tiny tokenizer files."""
    directory = tmp_path_factory.mktemp("tiny-model")
    save_checkpoint(build_tiny_model(), directory, max_shard_size=TINY_SHARD_SIZE)
    for path in tokenizer_dir.iterdir():
        shutil.copy2(path, directory / path.name)
    return directory


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir: Path) -> BaichuanM1ForCausalLM:
    """The tiny checkpoint loaded in fp32, eval mode (shared: do not modify)."""
    return load_checkpoint(tiny_model_dir, dtype=torch.float32)
