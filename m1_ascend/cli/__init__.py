"""The ``m1-ascend`` command: one module per subcommand, each exposing ``register(subparsers)``.

Errors end as one readable line on stderr and a non-zero exit; ``--debug`` shows the traceback.
To add a subcommand, write ``m1_ascend/cli/<name>.py`` (command ``<name>`` with ``-`` for ``_``)
and list it in ``COMMANDS``. Only the chosen command's module is imported, and all of them for
``--help``: a command whose dependencies this Python lacks (the server's fastapi in openMind's
environment, say) is listed as unavailable instead of breaking every other command.
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
    "openmind_register",
    "selftest",
    "serve",
    "verify_weights",
]


class CLIError(Exception):
    """An error the user can fix; printed as one line."""


def _register(subparsers: argparse._SubParsersAction, module: str) -> None:
    try:
        importlib.import_module(f"{__name__}.{module}").register(subparsers)
    except ModuleNotFoundError as exc:
        if (exc.name or "m1_ascend").partition(".")[0] == "m1_ascend":  # our own module missing: a real bug
            raise
        missing = exc.name

        def unavailable(args: argparse.Namespace) -> int:
            raise CLIError(f"needs the {missing!r} package, which this Python cannot import; install m1-ascend's "
                           "requirements here (with -c constraints.txt) or run the command elsewhere")

        # No option prefix: every argument (--help too) lands in "ignored", so the reason is always what prints.
        parser = subparsers.add_parser(module.replace("_", "-"), help=f"(unavailable here: no {missing})",
                                       add_help=False, prefix_chars="\0")
        parser.add_argument("ignored", nargs="*")
        parser.set_defaults(handler=unavailable)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser with ``command``'s subcommand only, or with every subcommand (``None`` or not a command)."""
    parser = argparse.ArgumentParser(prog="m1-ascend", description="Baichuan-M1 on Ascend NPUs (and CPU).")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = [name for name in COMMANDS if name.replace("_", "-") == command]
    for name in chosen or COMMANDS:
        _register(subparsers, name)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(next((arg for arg in argv if not arg.startswith("-")), None))
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
