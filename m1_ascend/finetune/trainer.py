"""Run a recipe: transformers' Trainer + peft LoRA on our ``BaichuanM1ForCausalLM`` (CPU or NPU).

The device is whatever transformers picks (an NPU when ``torch_npu`` is present, else CPU;
``use_cpu: true`` forces CPU), so the same recipe runs on a laptop and a 910. Multi-card runs
go through ``torchrun`` like any Trainer script. The output directory ends up with the adapter
(``adapter_config.json`` + ``adapter_model.safetensors``), the tokenizer files, the trainer state
and ``loss_curve.png``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer, TrainerCallback

from .data import PaddingCollator, SupervisedDataset, build_dataset, resolve_datasets
from .files import copy_support_files
from .recipe import Recipe, RecipeError, training_argument_fields
from .update_skip import SkipSettings, UpdateSkipper

logger = logging.getLogger(__name__)

LOSS_CURVE = "loss_curve.png"


@dataclass
class FinetuneResult:
    output_dir: Path
    global_step: int
    seconds_per_step: float
    train_losses: list[tuple[int, float]]  # (step, logged training loss)
    skipped_steps: list[int] = field(default_factory=list)
    loss_before: float | None = None  # mean loss over (up to) the first examples, before and after training
    loss_after: float | None = None
    num_examples: int = 0
    main_process: bool = True  # the rank that wrote output_dir (only it should judge the files)


class M1Trainer(Trainer):
    """Trainer that reports how many optimizer updates were skipped in its logs."""

    def __init__(self, *args: Any, skipper: UpdateSkipper | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.skipper = skipper

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        if self.skipper is not None and "loss" in logs:
            logs["skipped_updates"] = self.skipper.skipped
        super().log(logs, *args, **kwargs)


class LossCurveCallback(TrainerCallback):
    """Writes ``loss_curve.png`` (training loss and learning rate per step) at every save and at the end."""

    def __init__(self, output_dir: Path) -> None:
        self.output_dir = output_dir

    def _write(self, state) -> None:  # noqa: ANN001 (transformers TrainerState)
        if state.is_world_process_zero:
            plot_loss_curve(state.log_history, self.output_dir / LOSS_CURVE)

    def on_save(self, args, state, control, **kwargs):  # noqa: ANN001
        self._write(state)

    def on_train_end(self, args, state, control, **kwargs):  # noqa: ANN001
        self._write(state)


def plot_loss_curve(log_history: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [(e["step"], e["loss"]) for e in log_history if "loss" in e]
    lrs = [(e["step"], e["learning_rate"]) for e in log_history if "learning_rate" in e]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if points:
        ax.plot(*zip(*points, strict=True), color="tab:blue", marker=".", label="training loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    if lrs:
        lr_ax = ax.twinx()
        lr_ax.plot(*zip(*lrs, strict=True), color="tab:orange", alpha=0.6, label="learning rate")
        lr_ax.set_ylabel("learning rate")
    ax.set_title("m1-ascend finetune")
    fig.legend(loc="upper right", bbox_to_anchor=(0.88, 0.88))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


@torch.no_grad()
def dataset_loss(model: torch.nn.Module, dataset: SupervisedDataset, collator: PaddingCollator,
                 limit: int = 64, batch_size: int = 8) -> float:
    """Mean per-token loss over the first ``limit`` examples (eval mode, no dropout)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total, tokens = 0.0, 0
    examples = [dataset[i] for i in range(min(limit, len(dataset)))]
    for start in range(0, len(examples), batch_size):
        batch = {k: v.to(device) for k, v in collator(examples[start:start + batch_size]).items()}
        n = int((batch["labels"][:, 1:] != -100).sum())
        loss = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"],
                     use_cache=False).loss
        total += float(loss) * n
        tokens += n
    model.train(was_training)
    return total / max(tokens, 1)


def _resume_checkpoint(recipe: Recipe, output_dir: Path) -> str | None:
    """openMind's rule: a non-empty output_dir resumes from its last checkpoint unless overwritten."""
    from transformers.trainer_utils import get_last_checkpoint

    if not output_dir.is_dir() or not any(output_dir.iterdir()) or recipe.get("overwrite_output_dir"):
        return None
    last = get_last_checkpoint(str(output_dir))
    if last is None:
        raise recipe.error("output_dir", f"{output_dir} is not empty and holds no checkpoint; set overwrite_output_dir: "
                                         "true or choose a new directory")
    logger.info("resuming from %s", last)
    return last


def _skipper(recipe: Recipe, max_grad_norm: float) -> UpdateSkipper | None:
    factor = float(recipe.get("grad_skip_factor", 0) or 0)
    if not factor:
        return None
    settings = SkipSettings(factor=factor, max_grad_norm=max_grad_norm)
    for key, attr in (("grad_skip_ema_beta", "ema_beta"), ("grad_skip_warmup_steps", "warmup_steps"),
                      ("grad_skip_max_consecutive", "max_consecutive")):
        if recipe.get(key) is not None:
            setattr(settings, attr, type(getattr(settings, attr))(recipe.get(key)))
    return UpdateSkipper(settings)


def run_finetune(recipe: Recipe, callbacks: Sequence[TrainerCallback] = (), measure_loss: bool = False) -> FinetuneResult:
    """Train a LoRA adapter as the recipe says and save it; ``callbacks`` run before the built-in ones."""
    from peft import LoraConfig, get_peft_model
    from transformers import Seq2SeqTrainingArguments

    from ..checkpoint import load_checkpoint
    from ..tokenizer import M1Tokenizer

    model_dir = Path(recipe.get("model_name_or_path")).expanduser()
    if not model_dir.is_dir():
        raise recipe.error("model_name_or_path", f"{model_dir} is not a local checkpoint directory (nothing is downloaded)")
    output_dir = Path(recipe.get("output_dir")).expanduser()
    resume = _resume_checkpoint(recipe, output_dir)

    tokenizer = M1Tokenizer.from_pretrained(model_dir)
    dataset = build_dataset(resolve_datasets(recipe.get("dataset"), recipe.get("custom_dataset_info")),
                            tokenizer, recipe.cutoff_len, recipe.reserved_label_len)
    logger.info("%d examples, %d tokens (%d truncated to cutoff_len=%d)", len(dataset), dataset.num_tokens(),
                dataset.truncated, recipe.cutoff_len)

    kwargs = recipe.training_arguments(training_argument_fields())
    skipper = _skipper(recipe, float(kwargs.get("max_grad_norm", 1.0)))
    if skipper is not None:
        kwargs["max_grad_norm"] = 0.0  # the skipper needs the unclipped norm and clips accepted steps itself
    try:
        args = Seq2SeqTrainingArguments(**kwargs)
    except (TypeError, ValueError) as exc:
        raise RecipeError(f"{recipe.source}: transformers rejected the training arguments: {exc}") from None

    model = load_checkpoint(model_dir, dtype=torch.bfloat16 if args.bf16 else torch.float32)
    model.name_or_path = model.config.name_or_path = str(model_dir.resolve())  # peft records it as the base model
    lora = LoraConfig(r=recipe.lora_rank, lora_alpha=recipe.lora_alpha, lora_dropout=recipe.lora_dropout,
                      target_modules=recipe.lora_target_modules, task_type="CAUSAL_LM", bias="none")
    model = get_peft_model(model, lora)
    collator = PaddingCollator(pad_token_id=model.config.pad_token_id or 0, max_length=recipe.get("max_length"),
                               ignore_pad_token_for_loss=recipe.get("ignore_pad_token_for_loss", True))

    trainer = M1Trainer(model=model, args=args, train_dataset=dataset, data_collator=collator, skipper=skipper,
                        callbacks=[*callbacks, *([skipper] if skipper else []), LossCurveCallback(output_dir)])
    loss_before = dataset_loss(model, dataset, collator) if measure_loss else None
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=resume)
    elapsed = time.perf_counter() - started
    loss_after = dataset_loss(model, dataset, collator) if measure_loss else None

    trainer.save_model(str(output_dir))
    trainer.save_state()
    if trainer.is_world_process_zero():
        copy_support_files(model_dir, output_dir)
    steps = trainer.state.global_step
    return FinetuneResult(
        output_dir=output_dir,
        global_step=steps,
        seconds_per_step=elapsed / max(steps, 1),
        train_losses=[(e["step"], e["loss"]) for e in trainer.state.log_history if "loss" in e],
        skipped_steps=list(skipper.skipped_steps) if skipper else [],
        loss_before=loss_before,
        loss_after=loss_after,
        num_examples=len(dataset),
        main_process=trainer.is_world_process_zero(),
    )
