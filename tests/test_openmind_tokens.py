"""``m1-ascend finetune`` builds the very tokens openMind 1.0.0 builds: ids, labels and attention masks.

``tests/data/openmind_tokens.json`` was recorded by the real openMind 1.0.0 (``openmind_dump_tokens.py``
in its venv, Baichuan-M1 registered with ``m1-ascend openmind-register``) on the shipped tiny recipe
and example data with the demo tokenizer, at five ``cutoff_len`` values so openMind's truncation
is covered; the slow test repeats the comparison live. Re-record after changing the data, the
template or the demo tokenizer (from a directory laid out like the repository root, with the
demo checkpoint at ``saves/demo-checkpoint``):

    OPENMIND_PYTHON tests/openmind_dump_tokens.py deploy/openmind/tiny_lora_sft_cpu.yaml \\
        tests/data/openmind_tokens.json 128 64 40 24 12
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from openmind_testing import assert_same_tokens

from m1_ascend.demo import DEMO_VOCAB, UNK_ID, write_tokenizer_files
from m1_ascend.finetune.openmind_register import GROUP_NAME
from m1_ascend.finetune.openmind_template import OPENMIND_TEMPLATE
from m1_ascend.tokenizer import M1Tokenizer

REPO = Path(__file__).resolve().parents[1]
RECORDING = json.loads((Path(__file__).parent / "data" / "openmind_tokens.json").read_text(encoding="utf-8"))
STALE = "the recording is stale: re-record it as this module's docstring says"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def demo_tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tokenizer_files(tmp_path_factory.mktemp("demo-tokenizer"), DEMO_VOCAB, byte_fallback=True)


def test_recording_is_of_our_template_tokenizer_and_data(demo_tokenizer_dir: Path) -> None:
    assert (RECORDING["openmind"], RECORDING["model_group"], RECORDING["template"]) == ("1.0.0", GROUP_NAME, GROUP_NAME)
    assert RECORDING["template_fields"] == {k: v for k, v in OPENMIND_TEMPLATE.items() if k != "name"}, STALE
    assert RECORDING["tokenizer_model_sha256"] == sha256(demo_tokenizer_dir / "tokenizer.model"), STALE
    for path, digest in RECORDING["data_sha256"].items():
        assert sha256(REPO / path) == digest, f"{path} changed: {STALE}"


@pytest.mark.parametrize("run", RECORDING["runs"], ids=lambda run: f"cutoff_len={run['cutoff_len']}")
def test_runner_builds_openminds_tokens(run: dict, demo_tokenizer_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    assert_same_tokens(RECORDING, run, M1Tokenizer.from_pretrained(demo_tokenizer_dir), UNK_ID)


def test_recorded_runs_cover_the_template_and_truncation() -> None:
    """What the recording shows about openMind, so the comparison above is not vacuous."""
    first = RECORDING["runs"][0]["examples"]
    dialogue = first[8]  # the two-turn sharegpt record: both answers and their EOS are learned
    assert sum(label == 2 for label in dialogue["labels"]) == 2
    assert all(ex["input_ids"][0] == 71 for ex in first)  # <B_SYS>: the default system prompt, always
    cut = {run["cutoff_len"]: [len(ex["input_ids"]) for ex in run["examples"]] for run in RECORDING["runs"]}
    assert max(cut[12]) == 12 and max(cut[24]) == 24 and max(cut[128]) < 128
