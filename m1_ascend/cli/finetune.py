"""``m1-ascend finetune RECIPE.yaml``: run an openMind ``train`` recipe here (LoRA SFT, CPU or NPU)."""

from __future__ import annotations

import argparse
import logging


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "finetune", help="LoRA fine-tuning from an openMind train recipe (YAML)",
        description="Run the same YAML that `openmind-cli train` takes, with transformers' Trainer and peft on "
                    "this package's model. Unknown keys are rejected. Multi-card: "
                    "torchrun --nproc_per_node N -m m1_ascend finetune RECIPE.yaml")
    parser.add_argument("recipe", metavar="RECIPE.yaml", help="openMind train recipe (see deploy/openmind/)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe key (YAML value; KEY.SUB=VALUE sets one entry of a mapping); repeatable")
    parser.add_argument("--check", action="store_true",
                        help="only validate the recipe and read its datasets, then exit")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..finetune.recipe import load_recipe

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    recipe = load_recipe(args.recipe, args.overrides)
    extra = recipe.extension_keys()
    if extra:
        print(f"note: {', '.join(extra)} are m1-ascend-only keys; openmind-cli would reject them")
    if args.check:
        return _check(recipe)
    from ..finetune.trainer import run_finetune

    result = run_finetune(recipe)
    losses = result.train_losses
    print(f"trained {result.global_step} steps on {result.num_examples} examples, "
          f"{result.seconds_per_step:.3f} s/step")
    if losses:
        print(f"training loss {losses[0][1]:.4f} (step {losses[0][0]}) -> {losses[-1][1]:.4f} (step {losses[-1][0]})")
    if recipe.get("grad_skip_factor"):
        print(f"skipped updates: {len(result.skipped_steps)} {result.skipped_steps or ''}".rstrip())
    print(f"adapter and loss_curve.png in {result.output_dir}")
    return 0


def _check(recipe) -> int:  # noqa: ANN001 (Recipe, imported lazily)
    from ..finetune.data import build_dataset, resolve_datasets
    from ..tokenizer import M1Tokenizer

    tokenizer = M1Tokenizer.from_pretrained(recipe.get("model_name_or_path"))
    specs = resolve_datasets(recipe.get("dataset"), recipe.get("custom_dataset_info"))
    dataset = build_dataset(specs, tokenizer, recipe.cutoff_len)
    print(f"recipe OK: {len(dataset)} examples, {dataset.num_tokens()} tokens, {dataset.truncated} truncated, "
          f"{len(dataset.dropped)} without an answer token after cutoff_len")
    return 0
