"""The embedded demo checkpoint: official layout, loadable both ways, idempotent, reproducible,
never half-written. Default runs train for one step (or none); the full recipe is slow_e2e."""

from __future__ import annotations

import fcntl
import json
import threading
import time
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from m1_ascend.checkpoint import INDEX_FILE, load_checkpoint, load_config, validate_checkpoint
from m1_ascend.cli import main
from m1_ascend.config import preset_config
from m1_ascend.demo import DEMO_MARKER, build_demo_checkpoint, default_demo_dir, ensure_demo_checkpoint
from m1_ascend.tokenizer import DEFAULT_CHAT_TEMPLATE, DEFAULT_ROLE_TOKEN_IDS, M1Tokenizer
from m1_ascend.weights import verify_weights

STEPS = 1
QUESTION = [{"role": "user", "content": "What is hypertension?"}]


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_demo_checkpoint(tmp_path_factory.mktemp("demo") / "demo", train_steps=STEPS)


def snapshot(directory: Path) -> dict[str, tuple[int, bytes]]:
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(directory.iterdir())}


def test_official_layout(demo_dir: Path) -> None:
    names = {p.name for p in demo_dir.iterdir()}
    assert {"config.json", INDEX_FILE, "generation_config.json", "tokenizer.model", "tokenizer_config.json"} <= names
    # What export-hf-code writes, so AutoTokenizer and openMind load the demo with trust_remote_code.
    assert {"configuration_baichuan.py", "modeling_baichuan.py", "tokenization_baichuan_m1.py"} <= names
    assert json.loads((demo_dir / "tokenizer_config.json").read_text())["auto_map"] == {
        "AutoTokenizer": ["tokenization_baichuan_m1.BaichuanM1Tokenizer", None]}
    assert len(list(demo_dir.glob("model-*-of-*.safetensors"))) > 1
    config = load_config(demo_dir)
    validate_checkpoint(demo_dir, config)
    demo = preset_config("demo")
    assert (config.hidden_size, config.num_hidden_layers, config.sliding_window) == (
        demo.hidden_size, demo.num_hidden_layers, demo.sliding_window)
    tokenizer = M1Tokenizer.from_pretrained(demo_dir)
    assert tokenizer.vocab_size == config.vocab_size == 2048
    assert tokenizer.role_token_ids == DEFAULT_ROLE_TOKEN_IDS
    assert json.loads((demo_dir / "tokenizer_config.json").read_text())["chat_template"] == DEFAULT_CHAT_TEMPLATE
    assert json.loads((demo_dir / "generation_config.json").read_text())["eos_token_id"] == tokenizer.eos_token_id
    manifest = verify_weights(demo_dir, progress=False)  # the server checks it at start-up
    assert manifest.manifest_found and manifest.intact and manifest.files_checked == len(names) - 1


def test_loads_through_auto_model_and_own_loader(demo_dir: Path) -> None:
    tokenizer = M1Tokenizer.from_pretrained(demo_dir)
    ids = torch.tensor([tokenizer.apply_chat_template(QUESTION)])
    ours = load_checkpoint(demo_dir)
    auto = AutoModelForCausalLM.from_pretrained(demo_dir).eval()
    with torch.no_grad():
        assert torch.equal(auto(ids).logits, ours(ids).logits)
        reply = ours.generate(ids, max_new_tokens=6, do_sample=False, eos_token_id=None, pad_token_id=0)
    assert isinstance(tokenizer.decode(reply[0, ids.shape[1]:].tolist()), str)


def test_build_is_idempotent_and_reproducible(demo_dir: Path, tmp_path: Path) -> None:
    before = snapshot(demo_dir)
    assert build_demo_checkpoint(demo_dir, train_steps=STEPS) == demo_dir
    assert snapshot(demo_dir) == before  # complete: nothing rewritten

    other = build_demo_checkpoint(tmp_path / "other", train_steps=STEPS)
    contents = {name: data for name, (_, data) in before.items()}
    assert {name: data for name, (_, data) in snapshot(other).items()} == contents

    rebuilt = snapshot(build_demo_checkpoint(other, seed=1, train_steps=STEPS))  # another recipe: rebuilt
    assert rebuilt["tokenizer.model"][1] == contents["tokenizer.model"]
    assert rebuilt["model-00001-of-00004.safetensors"][1] != contents["model-00001-of-00004.safetensors"]


def test_interrupted_build_leaves_the_previous_state(tmp_path: Path) -> None:
    def interrupt(message: str) -> None:
        if message.startswith("training the demo model"):
            raise KeyboardInterrupt

    target = tmp_path / "demo"
    with pytest.raises(KeyboardInterrupt):
        build_demo_checkpoint(target, train_steps=0, progress=interrupt)
    assert [p.name for p in tmp_path.iterdir()] == [".demo.lock"]  # no target, no staging directory

    build_demo_checkpoint(target, train_steps=0)
    before = snapshot(target)
    with pytest.raises(KeyboardInterrupt):
        build_demo_checkpoint(target, train_steps=0, force=True, progress=interrupt)
    assert snapshot(target) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [".demo.lock", "demo"]


def test_a_concurrent_build_waits_and_reuses_the_result(tmp_path: Path) -> None:
    target = tmp_path / "demo"
    messages: list[str] = []
    waiter = threading.Thread(target=build_demo_checkpoint, args=(target,),
                              kwargs={"train_steps": 0, "progress": messages.append})
    with (tmp_path / ".demo.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another "process" is building
        waiter.start()
        deadline = time.monotonic() + 60
        while not messages and time.monotonic() < deadline:
            time.sleep(0.05)
        assert messages == [f"waiting for another process building {target}"]
        build_demo_checkpoint(tmp_path / "elsewhere", train_steps=0).rename(target)  # ...and finishes
        fcntl.flock(lock, fcntl.LOCK_UN)
    waiter.join(timeout=60)
    assert messages[-1] == f"demo checkpoint already complete at {target}"  # no second build


def test_the_next_build_removes_folders_of_interrupted_builds(tmp_path: Path) -> None:
    """A server stopped mid-build leaves its staging folder; the next build of that target clears it."""
    for leftover in (".demo.building-0badf00d", ".demo.old-0badf00d"):
        (tmp_path / leftover).mkdir()
        (tmp_path / leftover / "model-00001-of-00004.safetensors").write_bytes(b"half written")
    (tmp_path / ".other.building-0badf00d").mkdir()  # another target's: not this build's business
    build_demo_checkpoint(tmp_path / "demo", train_steps=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".demo.lock", ".other.building-0badf00d", "demo"]


def test_a_live_builds_folder_is_left_alone_until_its_lock_is_free(tmp_path: Path) -> None:
    target, live = tmp_path / "demo", tmp_path / ".demo.building-live"
    messages: list[str] = []
    waiter = threading.Thread(target=build_demo_checkpoint, args=(target,),
                              kwargs={"train_steps": 0, "progress": messages.append})
    with (tmp_path / ".demo.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process is building into `live`
        live.mkdir()
        (live / "tokenizer.model").write_bytes(b"in progress")
        waiter.start()
        deadline = time.monotonic() + 60
        while not messages and time.monotonic() < deadline:
            time.sleep(0.05)
        assert messages == [f"waiting for another process building {target}"]
        assert (live / "tokenizer.model").read_bytes() == b"in progress"  # untouched while its build lives
        fcntl.flock(lock, fcntl.LOCK_UN)  # ...and that process dies without cleaning up
    waiter.join(timeout=600)
    assert not live.exists() and (target / DEMO_MARKER).is_file()


def test_refuses_to_overwrite_a_directory_that_is_not_a_demo(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="refusing to overwrite"):
        build_demo_checkpoint(tmp_path, train_steps=STEPS)
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_default_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("M1_ASCEND_DEMO_DIR", str(tmp_path / "d"))
    assert default_demo_dir() == tmp_path / "d"
    monkeypatch.delenv("M1_ASCEND_DEMO_DIR")
    assert default_demo_dir() == Path.home() / ".cache" / "m1-ascend" / "demo"


def test_build_demo_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "demo"
    assert main(["build-demo", "--output", str(target), "--train-steps", "0"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("training the demo tokenizer") and out[-1] == str(target)
    assert json.loads((target / DEMO_MARKER).read_text())["train_steps"] == 0
    assert main(["build-demo", "--output", str(target), "--train-steps", "0"]) == 0
    assert "already complete" in capsys.readouterr().out
    assert main(["build-demo", "--output", str(target), "--train-steps", "-1"]) == 1
    err = capsys.readouterr().err
    assert err == "m1-ascend build-demo: error: train_steps must be >= 0, got -1\n"


@pytest.mark.slow_e2e
@pytest.mark.timeout(3600)  # about a minute on 2 idle cores, far longer on a shared machine
def test_trained_demo_answers_in_words() -> None:
    """The full recipe: the demo has learned its corpus."""
    directory = ensure_demo_checkpoint()
    tokenizer = M1Tokenizer.from_pretrained(directory)
    model = load_checkpoint(directory)
    ids = torch.tensor([tokenizer.apply_chat_template(QUESTION)])
    with torch.no_grad():
        reply = model.generate(ids, max_new_tokens=24, do_sample=False, eos_token_id=tokenizer.stop_token_ids)
    assert "blood pressure" in tokenizer.decode(reply[0, ids.shape[1]:].tolist())
