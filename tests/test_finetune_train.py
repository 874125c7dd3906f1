"""Training: the shipped tiny recipe learns, the loss curve is drawn, and gradient spikes are skipped."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from deploy_testing import run_script
from finetune_testing import REPO, TINY_RECIPE, tiny_recipe_overrides, write_medical_qa
from transformers import TrainerCallback

from m1_ascend.cli import main
from m1_ascend.finetune.recipe import RecipeError, load_recipe
from m1_ascend.finetune.trainer import run_finetune
from m1_ascend.finetune.update_skip import SkipSettings, TooManySkippedUpdates, UpdateSkipper

SHELLCHECK = shutil.which("shellcheck", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")


def test_tiny_recipe_30_steps_lowers_the_loss(tmp_path: Path, tiny_model_dir: Path) -> None:
    info = write_medical_qa(tmp_path / "data")
    out = tmp_path / "out"
    recipe = load_recipe(TINY_RECIPE, tiny_recipe_overrides(tiny_model_dir, info, out))
    assert recipe.get("max_steps") == 30
    result = run_finetune(recipe, measure_loss=True)
    assert result.global_step == 30
    assert result.loss_after < 0.7 * result.loss_before, (result.loss_before, result.loss_after)
    assert result.train_losses[-1][1] < result.train_losses[0][1]
    assert (out / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(tiny_model_dir.resolve())
    assert sorted(config["target_modules"]) == sorted(["W_pack", "o_proj", "gate_proj", "up_proj", "down_proj"])
    assert config["r"] == 8 and config["lora_alpha"] == 16
    assert (out / "adapter_model.safetensors").exists() and (out / "tokenizer.model").exists()
    print(f"\nloss {result.loss_before:.3f} -> {result.loss_after:.3f}, {result.seconds_per_step * 1000:.0f} ms/step")


def make_skipper(**settings: float) -> UpdateSkipper:
    return UpdateSkipper(SkipSettings(**{"factor": 3.0, "warmup_steps": 3, **settings}))


def test_skipped_update_leaves_weights_and_optimizer_state_alone() -> None:
    torch.manual_seed(0)
    layer = torch.nn.Linear(8, 8)
    optimizer = torch.optim.AdamW(layer.parameters(), lr=0.1, weight_decay=0.1)
    skipper = make_skipper()
    params = list(layer.parameters())
    x = torch.randn(4, 8)

    def step(scale: float, step_no: int) -> bool:
        optimizer.zero_grad()
        (layer(x).pow(2).sum() * scale).backward()
        skipped = skipper.apply(params, step_no)
        optimizer.step()
        return skipped

    assert [step(1.0, i) for i in range(1, 5)] == [False] * 4
    before = [p.detach().clone() for p in params]
    adam_steps = [float(optimizer.state[p]["step"]) for p in params]
    assert step(1000.0, 5) is True  # a spike: far above 3 x the running average
    assert all(torch.equal(p, b) for p, b in zip(params, before, strict=True))
    assert [float(optimizer.state[p]["step"]) for p in params] == adam_steps
    assert step(1.0, 6) is False and not all(torch.equal(p, b) for p, b in zip(params, before, strict=True))
    assert step(float("nan"), 7) is True  # non-finite norms are always skipped
    assert skipper.skipped == 2 and skipper.skipped_steps == [5, 7]


def test_skipping_waits_for_warmup_and_stops_a_diverging_run() -> None:
    skipper = make_skipper(max_consecutive=2)
    assert not skipper.should_skip(1e6)  # no average yet
    params = [torch.nn.Parameter(torch.ones(3))]
    for i, norm in enumerate([1.0, 1.0, 1.0]):
        params[0].grad = torch.full((3,), norm)
        assert not skipper.apply(params, i)
    params[0].grad = torch.full((3,), 100.0)
    assert skipper.apply(params, 4)
    params[0].grad = torch.full((3,), 100.0)
    with pytest.raises(TooManySkippedUpdates, match="2 optimizer updates skipped in a row"):
        skipper.apply(params, 5)


class SpikeAt(TrainerCallback):
    """Multiplies the gradients of one step by 1000 and records whether that step moved the weights."""

    def __init__(self, step: int) -> None:
        self.step = step
        self.snapshot: list[torch.Tensor] = []
        self.unchanged: dict[int, bool] = {}

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):  # noqa: ANN001
        trainable = [p for p in model.parameters() if p.requires_grad]
        self.snapshot = [p.detach().clone() for p in trainable]
        if state.global_step + 1 == self.step:
            for p in trainable:
                if p.grad is not None:
                    p.grad.mul_(1000.0)

    def on_step_end(self, args, state, control, model=None, **kwargs):  # noqa: ANN001
        trainable = [p for p in model.parameters() if p.requires_grad]
        self.unchanged[state.global_step] = all(torch.equal(p, s) for p, s in zip(trainable, self.snapshot, strict=True))


def test_injected_gradient_spike_is_skipped_during_training(tmp_path: Path, tiny_model_dir: Path) -> None:
    info = write_medical_qa(tmp_path / "data")
    overrides = tiny_recipe_overrides(tiny_model_dir, info, tmp_path / "out") + [
        "max_steps=8", "warmup_steps=0", "lr_scheduler_type=constant", "lr_scheduler_kwargs={}", "logging_steps=1",
        "grad_skip_factor=3", "grad_skip_warmup_steps=3"]
    spike = SpikeAt(step=6)
    result = run_finetune(load_recipe(TINY_RECIPE, overrides), callbacks=[spike])
    assert result.skipped_steps == [6]
    assert spike.unchanged == {step: step == 6 for step in range(1, 9)}
    history = json.loads((tmp_path / "out" / "trainer_state.json").read_text())["log_history"]
    skipped_counts = {e["step"]: e["skipped_updates"] for e in history if "skipped_updates" in e}
    assert skipped_counts[5] == 0 and skipped_counts[6] == 1 and skipped_counts[8] == 1


def test_non_empty_output_dir_without_checkpoint_is_refused(tmp_path: Path, tiny_model_dir: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    info = write_medical_qa(tmp_path / "data")
    recipe = load_recipe(TINY_RECIPE, tiny_recipe_overrides(tiny_model_dir, info, out) + ["overwrite_output_dir=false"])
    with pytest.raises(RecipeError, match="is not empty and holds no checkpoint"):
        run_finetune(recipe)


def test_cli_checks_and_runs_the_recipe(tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    info = write_medical_qa(tmp_path / "data")
    args = ["finetune", str(TINY_RECIPE)]
    for value in tiny_recipe_overrides(tiny_model_dir, info, tmp_path / "out"):
        args += ["--set", value]
    assert main([*args, "--check"]) == 0
    assert "recipe OK: 10 examples" in capsys.readouterr().out
    assert main([*args, "--set", "max_steps=2", "--set", "logging_steps=1"]) == 0
    out = capsys.readouterr().out
    assert "trained 2 steps on 10 examples" in out and "training loss" in out
    assert main(["finetune", str(TINY_RECIPE), "--set", "lora_rnak=4"]) == 1
    assert "did you mean 'lora_rank'" in capsys.readouterr().err

    # --check-output judges a finished run by its files (openmind-cli's exit status says nothing).
    assert main([*args, "--set", "max_steps=2", "--check-output"]) == 0
    assert "LoRA adapter (20 modules) after 2 steps; training loss" in capsys.readouterr().out
    assert main([*args, "--check-output"]) == 1
    assert "training stopped at step 2 of 30" in capsys.readouterr().err
    assert main([*args, "--set", "max_steps=2", "--check-output", "--since", str(time.time() + 60)]) == 1
    assert "is older than this run" in capsys.readouterr().err
    empty = ["finetune", str(TINY_RECIPE), "--set", f"output_dir={tmp_path / 'empty'}", "--check-output"]
    assert main(empty) == 1
    assert "holds no LoRA adapter (adapter_config.json + adapter_model.safetensors)" in capsys.readouterr().err


def test_openmind_wrapper_fails_when_openmind_cli_trained_nothing(tmp_path: Path) -> None:
    """openmind-cli exits 0 after a crash; the wrapper must not (the real openmind-cli: test_openmind_e2e.py)."""
    crashed = tmp_path / "openmind-cli"
    crashed.write_text("#!/bin/sh\necho 'ValueError: Tokenizer class M1Tokenizer does not exist' >&2\nexit 0\n")
    crashed.chmod(0o755)
    script = REPO / "deploy" / "openmind" / "openmind-train.sh"
    assert "usage:" in run_script(script, "--help").stdout.lower()
    assert run_script(script).returncode == 64
    recipe = tmp_path / "deploy" / "openmind" / TINY_RECIPE.name
    recipe.parent.mkdir(parents=True)
    shutil.copy2(TINY_RECIPE, recipe)
    result = run_script(script, str(recipe.relative_to(tmp_path)), env={"OPENMIND_CLI": str(crashed)}, cwd=tmp_path)
    assert result.returncode == 1
    assert "saves/tiny-lora-sft-cpu holds no LoRA adapter" in result.stderr
    assert "openmind-cli train did not finish (its exit status is always 0)" in result.stderr


@pytest.mark.skipif(SHELLCHECK is None, reason="shellcheck not installed (pip install -r requirements/dev.txt)")
def test_openmind_wrapper_passes_shellcheck() -> None:
    assert SHELLCHECK is not None
    result = subprocess.run([SHELLCHECK, "--severity=style", str(REPO / "deploy" / "openmind" / "openmind-train.sh")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
