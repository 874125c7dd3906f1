"""``m1-ascend build-demo``: build the embedded demo checkpoint (tokenizer + small trained model)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "build-demo", help="build the small demo checkpoint the server and quick start use",
        description="Train a small tokenizer and Baichuan-M1 model locally and write them in the official "
                    "checkpoint layout. Skips the build when the directory already holds a complete one.")
    parser.add_argument("--output", metavar="DIR", default=None,
                        help="where to write it (default: $M1_ASCEND_DEMO_DIR or ~/.cache/m1-ascend/demo)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the build (default: 0)")
    parser.add_argument("--train-steps", type=int, default=None, metavar="N",
                        help="training steps of the demo model (default: the built-in recipe; 0 leaves it untrained)")
    parser.add_argument("--force", action="store_true", help="rebuild even if a complete build is there")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..demo import DEMO_TRAIN_STEPS, build_demo_checkpoint

    steps = DEMO_TRAIN_STEPS if args.train_steps is None else args.train_steps
    path = build_demo_checkpoint(args.output, seed=args.seed, force=args.force, train_steps=steps,
                                 progress=lambda message: print(message, flush=True))
    print(path)
    return 0
