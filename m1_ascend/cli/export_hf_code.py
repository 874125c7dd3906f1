"""``m1-ascend export-hf-code``: thin trust_remote_code files so openMind loads this package's model."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export-hf-code", help="write configuration/modeling_baichuan.py + auto_map that load this package",
        description="For openmind-cli and trust_remote_code users: replaces the flash-attn remote code with thin "
                    "files importing m1-ascend (CPU and Ascend NPU; transformers 4.45 and 5.x). Files replaced "
                    "are kept as *.bak.")
    parser.add_argument("checkpoint", metavar="CHECKPOINT_DIR", help="checkpoint directory with config.json")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..finetune.hf_code import export_hf_code

    changed = export_hf_code(args.checkpoint)
    print(f"updated {', '.join(changed)}" if changed else "already up to date")
    return 0
