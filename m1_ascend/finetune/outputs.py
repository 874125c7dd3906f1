"""Did a training run finish? Judged from what it left in ``output_dir``, never from an exit status.

``openmind-cli train`` exits 0 even when training crashed (its launcher ignores the child's
status), so the deploy wrapper and ``m1-ascend finetune`` both ask the output directory instead:
a LoRA adapter this package can load, written by this run, and a trainer state whose step count
reached ``max_steps`` with finite logged losses.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from .lora_weights import ADAPTER_CONFIG, ADAPTER_WEIGHTS, AdapterError, load_lora

TRAINER_STATE = "trainer_state.json"


class TrainingOutputError(RuntimeError):
    """The output directory does not hold a finished run; the message says what is missing."""


@dataclass(frozen=True)
class TrainingOutput:
    output_dir: Path
    global_step: int
    losses: list[tuple[int, float]]  # (step, logged training loss)
    lora_modules: int

    @property
    def loss_fell(self) -> bool:
        return len(self.losses) > 1 and self.losses[-1][1] < self.losses[0][1]

    def summary(self) -> str:
        (first_step, first), (last_step, last) = self.losses[0], self.losses[-1]
        return (f"{self.output_dir}: LoRA adapter ({self.lora_modules} modules) after {self.global_step} steps; "
                f"training loss {first:.4f} (step {first_step}) -> {last:.4f} (step {last_step})")


def check_training_output(output_dir: str | Path, max_steps: int | None = None,
                          since: float | None = None) -> TrainingOutput:
    """The finished run in ``output_dir``; ``since`` (epoch seconds) rejects an adapter older than this run."""
    directory = Path(output_dir)
    weights = directory / ADAPTER_WEIGHTS
    if not (directory / ADAPTER_CONFIG).is_file() or not weights.is_file():
        raise TrainingOutputError(f"{directory} holds no LoRA adapter ({ADAPTER_CONFIG} + {ADAPTER_WEIGHTS}): "
                                  "training did not finish; see the training log")
    if since is not None and weights.stat().st_mtime < since:
        raise TrainingOutputError(f"{weights} is older than this run: training did not finish; see the training log")
    try:
        modules = len(load_lora(directory).modules)
    except AdapterError as exc:
        raise TrainingOutputError(f"the adapter cannot be used: {exc}") from None
    try:
        state = json.loads((directory / TRAINER_STATE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TrainingOutputError(f"{directory / TRAINER_STATE} is missing or unreadable ({exc})") from None
    step = int(state.get("global_step") or 0)
    if max_steps is not None and max_steps > 0 and step < max_steps:
        raise TrainingOutputError(f"training stopped at step {step} of {max_steps} ({directory / TRAINER_STATE})")
    losses = [(int(e["step"]), float(e["loss"])) for e in state.get("log_history", []) if "loss" in e]
    if not losses:
        raise TrainingOutputError(f"{directory / TRAINER_STATE} logged no training loss (set logging_steps)")
    bad = [step for step, loss in losses if not math.isfinite(loss)]
    if bad:
        raise TrainingOutputError(f"the training loss is not finite at step(s) {bad} ({directory / TRAINER_STATE})")
    return TrainingOutput(directory, step, losses, modules)
