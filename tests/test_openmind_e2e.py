"""The shipped tiny recipe trains under the real ``openmind-cli train`` (openMind 1.0.0 from PyPI, in its own venv).

Everything openMind runs is real: its wheel with its pinned transformers/peft/datasets/accelerate
(``openmind_testing``), Baichuan-M1 registered by ``m1-ascend openmind-register`` from that venv
(which has no fastapi: the CLI must not need it), the demo checkpoint built there, the shipped
recipe and data as they are. ``openmind-cli`` exits 0 even when training fails, so success is
read from the output directory. Skips when the package index cannot be reached.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import openai
import pytest
from openmind_testing import IndexUnreachable, assert_same_tokens, install_m1_ascend, openmind_venv
from server_testing import running_server

from m1_ascend.finetune.export import export_merged
from m1_ascend.finetune.outputs import check_training_output
from m1_ascend.tokenizer import M1Tokenizer

pytestmark = [pytest.mark.slow_e2e, pytest.mark.timeout(3600)]  # building the venv takes minutes the first time

REPO = Path(__file__).resolve().parents[1]
RECIPE = "deploy/openmind/tiny_lora_sft_cpu.yaml"
DEMO = "saves/demo-checkpoint"  # where the shipped recipe looks, from the repository root
OUTPUT = "saves/tiny-lora-sft-cpu"


@pytest.fixture(scope="module")
def openmind_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    try:
        python = openmind_venv()
    except IndexUnreachable as exc:
        pytest.skip(f"package index unreachable, openMind cannot be installed: {exc}")
    install_m1_ascend(python, tmp_path_factory.mktemp("m1-ascend-wheel"))
    return python.parent


def run(command: list[str], cwd: Path, env: dict[str, str], timeout: int = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_openmind_cli_trains_the_shipped_tiny_recipe(openmind_bin: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "repo"  # laid out like the repository root: openMind reads the recipe's paths from here
    shutil.copytree(REPO / "deploy" / "openmind", root / "deploy" / "openmind")
    env = {**os.environ, "PATH": f"{openmind_bin}{os.pathsep}{os.environ['PATH']}", "OMP_NUM_THREADS": "1",
           "XDG_CACHE_HOME": str(tmp_path / "cache"), "HF_MODULES_CACHE": str(tmp_path / "hf-modules"),
           "OPENMIND_HIDE_STACKTRACE": "FALSE"}
    m1 = str(openmind_bin / "m1-ascend")

    # 1. The m1-ascend CLI in openMind's environment (transformers 4.45, no fastapi).
    built = run([m1, "build-demo", "--output", DEMO, "--train-steps", "0"], root, env)
    assert built.returncode == 0, built.stderr[-3000:]
    registered = run([m1, "openmind-register"], root, env)
    assert registered.returncode == 0, registered.stderr[-3000:]
    versions = run([str(openmind_bin / "python"), "-c", "import openmind, transformers, torch, peft, datasets, accelerate;"
                    "print(openmind.__version__, transformers.__version__, torch.__version__, peft.__version__, "
                    "datasets.__version__, accelerate.__version__)"], root, env)
    print(f"\nopenMind, transformers, torch, peft, datasets, accelerate: {versions.stdout.strip()}")

    # 2. Live: the tokens openMind builds for the recipe are those m1-ascend finetune builds.
    dumped = run([str(openmind_bin / "python"), str(REPO / "tests" / "openmind_dump_tokens.py"), RECIPE,
                  str(tmp_path / "tokens.json"), "128", "24"], root, env)
    assert dumped.returncode == 0, dumped.stderr[-3000:]
    live = json.loads((tmp_path / "tokens.json").read_text())
    monkeypatch.chdir(root)
    for tokens_run in live["runs"]:
        assert_same_tokens(live, tokens_run, M1Tokenizer.from_pretrained(root / DEMO), 0)

    # 3. The real openmind-cli train, through the wrapper that checks what it left behind.
    trained = run([str(root / "deploy" / "openmind" / "openmind-train.sh"), RECIPE], root, env)
    assert trained.returncode == 0, (trained.stdout + trained.stderr)[-5000:]
    output = check_training_output(root / OUTPUT, max_steps=30)
    assert output.global_step == 30 and output.lora_modules == 20 and output.loss_fell
    state = json.loads((root / OUTPUT / "trainer_state.json").read_text())
    runtime = next(e["train_runtime"] for e in state["log_history"] if "train_runtime" in e)
    print(f"openmind-cli train: {output.summary()}; train_runtime {runtime:.1f} s")

    # 4. The adapter serves unmerged (m1-ascend serve --lora-adapters) exactly as its merge does.
    merged = export_merged(root / OUTPUT, tmp_path / "merged", base_dir=root / DEMO)
    prompt = M1Tokenizer.from_pretrained(root / DEMO).apply_chat_template([{"role": "user",
                                                                           "content": "What is hypertension?"}])

    def complete(client: openai.OpenAI, model: str) -> str:
        return client.completions.create(model=model, prompt=prompt, max_tokens=8, temperature=0,
                                         extra_body={"ignore_eos": True}).choices[0].text

    with running_server(root / DEMO, served_model_name="demo", lora_adapters=f"clinic={root / OUTPUT}",
                        dtype="float32") as server:
        client = server.client()
        assert sorted(m.id for m in client.models.list().data) == ["clinic", "demo"]
        served = complete(client, "clinic")
        assert served != complete(client, "demo")
    with running_server(merged, served_model_name="merged", dtype="float32") as server:
        assert complete(server.client(), "merged") == served

    # 5. Unregistered, openMind fails (KeyError: 'baichuan_m1') yet exits 0; the output check says so.
    assert run([m1, "openmind-register", "--uninstall"], root, env).returncode == 0
    shutil.rmtree(root / OUTPUT)
    failed = run(["openmind-cli", "train", RECIPE], root, env)
    assert failed.returncode == 0 and "KeyError: 'baichuan_m1'" in failed.stdout + failed.stderr
    checked = run([m1, "finetune", RECIPE, "--check-output"], root, env)
    assert checked.returncode == 1 and "holds no LoRA adapter" in checked.stderr
