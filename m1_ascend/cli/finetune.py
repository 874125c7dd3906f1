"""``m1-ascend finetune RECIPE.yaml``: run an openMind ``train`` recipe here (LoRA SFT, CPU or NPU)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "finetune", help="LoRA fine-tuning from an openMind train recipe (YAML)",
        description="Run the same YAML that `openmind-cli train` takes, with transformers' Trainer and peft on "
                    "this package's model. Unknown keys are rejected. Multi-card: "
                    "torchrun --nproc_per_node N -m m1_ascend finetune RECIPE.yaml")
    parser.add_argument("recipe", metavar="RECIPE.yaml", help="openMind train recipe (see deploy/openmind/)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe key (YAML value; KEY.SUB=VALUE sets one entry of a mapping); repeatable")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true",
                      help="only validate the recipe and read its datasets, then exit")
    mode.add_argument("--check-output", action="store_true",
                      help="train nothing; fail unless the recipe's output_dir holds a finished run (an adapter "
                           "and max_steps steps of finite loss), e.g. after openmind-cli train, which exits 0 "
                           "even when training fails")
    parser.add_argument("--since", type=float, metavar="EPOCH_SECONDS",
                        help="with --check-output: also fail if the adapter is older than this time (the run's start)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..finetune.recipe import load_recipe

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    recipe = load_recipe(args.recipe, args.overrides)
    if args.check_output:
        return _report(recipe, since=args.since)
    for note in recipe.openmind_notes():
        print(f"note: {note}")
    if args.check:
        return _check(recipe)
    from ..finetune.trainer import run_finetune

    result = run_finetune(recipe)
    print(f"trained {result.global_step} steps on {result.num_examples} examples, "
          f"{result.seconds_per_step:.3f} s/step")
    if recipe.get("grad_skip_factor"):
        print(f"skipped updates: {len(result.skipped_steps)} {result.skipped_steps or ''}".rstrip())
    if result.main_process:
        _report(recipe)
        print(f"loss_curve.png in {result.output_dir}")
    return 0


def _report(recipe, since: float | None = None) -> int:  # noqa: ANN001 (Recipe, imported lazily)
    """What the run left in output_dir, judged by the files (training may run on another rank or tool)."""
    from ..finetune.outputs import check_training_output

    output = check_training_output(Path(recipe.get("output_dir")).expanduser(), recipe.get("max_steps"), since)
    print(output.summary())
    if not output.loss_fell:
        print("warning: the logged training loss did not fall")
    return 0


def _check(recipe) -> int:  # noqa: ANN001 (Recipe, imported lazily)
    from ..finetune.data import build_dataset, resolve_datasets
    from ..tokenizer import M1Tokenizer

    tokenizer = M1Tokenizer.from_pretrained(Path(recipe.get("model_name_or_path")).expanduser())
    specs = resolve_datasets(recipe.get("dataset"), recipe.get("custom_dataset_info"))
    dataset = build_dataset(specs, tokenizer, recipe.cutoff_len, recipe.reserved_label_len)
    print(f"recipe OK: {len(dataset)} examples, {dataset.num_tokens()} tokens, {dataset.truncated} truncated, "
          f"{len(dataset.dropped)} without an answer token after cutoff_len, "
          f"{len(dataset.own_system)} with their own system prompt")
    return 0
