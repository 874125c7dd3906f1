"""Dynamic update skipping: drop an optimizer step whose gradient norm spikes (openmind.md §6.3).

Baichuan-M1's training recipe skips an update when the gradient is abnormally large instead of
letting one odd batch jolt the weights. Here a step is skipped when its global gradient norm
exceeds ``factor`` x the running average of accepted norms (or is not finite). Skipping sets
every gradient to ``None`` just before ``optimizer.step()``: torch optimizers leave such
parameters alone entirely (no update, no weight decay, no moment or step-count change). The
learning-rate schedule still advances, so a WSD schedule keeps its timing.

The callback needs the pre-clip norm, so the runner turns transformers' own clipping off
(``max_grad_norm=0``) and hands the clip value here; accepted steps are clipped the same way
transformers would have. Under DDP the gradients are already all-reduced at this point, so
every rank takes the same decision.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
from torch import nn
from transformers import TrainerCallback

logger = logging.getLogger(__name__)


class TooManySkippedUpdates(RuntimeError):
    """Training is diverging: every recent step was skipped."""


@dataclass
class SkipSettings:
    factor: float  # skip when norm > factor x running average
    ema_beta: float = 0.9  # running average = beta * average + (1 - beta) * accepted norm
    warmup_steps: int = 5  # accepted steps that only build the average
    max_consecutive: int = 10  # raise after this many skips in a row
    max_grad_norm: float = 0.0  # clip accepted steps to this norm (0 = no clipping)


class UpdateSkipper(TrainerCallback):
    """Decides, right before each optimizer step, whether to apply it."""

    def __init__(self, settings: SkipSettings) -> None:
        if settings.factor <= 1.0:
            raise ValueError(f"grad_skip_factor must be > 1, got {settings.factor}")
        self.settings = settings
        self.average: float | None = None
        self.accepted = 0
        self.skipped = 0
        self.consecutive = 0
        self.skipped_steps: list[int] = []

    def should_skip(self, norm: float) -> bool:
        if not math.isfinite(norm):
            return True
        if self.average is None or self.accepted < self.settings.warmup_steps:
            return False
        return norm > self.settings.factor * self.average

    def _accept(self, norm: float) -> None:
        beta = self.settings.ema_beta
        self.average = norm if self.average is None else beta * self.average + (1 - beta) * norm
        self.accepted += 1
        self.consecutive = 0

    def apply(self, parameters: list[nn.Parameter], step: int) -> bool:
        """Clip or drop the gradients of ``parameters``; True when the update was skipped."""
        grads = [p.grad for p in parameters if p.grad is not None]
        if not grads:
            return False
        norm = float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads])))
        if not self.should_skip(norm):
            self._accept(norm)
            if self.settings.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(parameters, self.settings.max_grad_norm)
            return False
        for p in parameters:
            p.grad = None
        self.skipped += 1
        self.consecutive += 1
        self.skipped_steps.append(step)
        logger.warning("skipped the optimizer update of step %d: grad norm %.4g > %.3g x running average %.4g",
                       step, norm, self.settings.factor, self.average if self.average is not None else float("nan"))
        if self.consecutive >= self.settings.max_consecutive:
            raise TooManySkippedUpdates(
                f"{self.consecutive} optimizer updates skipped in a row (last grad norm {norm:.4g}, running average "
                f"{self.average}); lower the learning rate or raise grad_skip_factor")
        return True

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):  # noqa: ANN001 (transformers API)
        params = [p for p in model.parameters() if p.requires_grad]
        self.apply(params, state.global_step + 1)
        return control
