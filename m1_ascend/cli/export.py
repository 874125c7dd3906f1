"""``m1-ascend export``: merge a LoRA adapter into its base model (official checkpoint layout)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export", help="merge a LoRA adapter into the base weights and write a checkpoint",
        description="Write base + adapter as sharded safetensors + index + config.json, with the base's tokenizer "
                    "files, for load_checkpoint, the server and MindIE.")
    parser.add_argument("--adapter", required=True, metavar="DIR", help="adapter directory (m1-ascend finetune output)")
    parser.add_argument("--output", required=True, metavar="DIR", help="new (or empty) output directory")
    parser.add_argument("--base", metavar="DIR", default=None,
                        help="base checkpoint (default: base_model_name_or_path from adapter_config.json)")
    parser.add_argument("--max-shard-size", default="5GB", help="largest safetensors shard (default: 5GB)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..finetune.export import export_merged

    print(export_merged(args.adapter, args.output, args.base, args.max_shard_size))
    return 0
