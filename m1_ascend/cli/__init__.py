"""The ``m1-ascend`` command: one module per subcommand, each exposing ``register(subparsers)``.

Errors end as one readable line on stderr and a non-zero exit; ``--debug`` shows the traceback.
To add a subcommand, write ``m1_ascend/cli/<name>.py`` and list it in ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = [
    "build_demo",
    "check_checkpoint",
    "doctor",
    "export",
    "export_hf_code",
    "finetune",
    "generate",
    "memory_plan",
    "mindie_adapter",
    "mindie_config",
    "serve",
    "verify_weights",
]


class CLIError(Exception):
    """An error the user can fix; printed as one line."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="m1-ascend", description="Baichuan-M1 on Ascend NPUs (and CPU).")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print(f"m1-ascend {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # every failure becomes one line unless --debug
        if args.debug:
            raise
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"m1-ascend {args.command}: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
