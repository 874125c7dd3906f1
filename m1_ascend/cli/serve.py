"""``m1-ascend serve``: the OpenAI-compatible server (flags mirror ``ServerSettings``; see docs/server.md)."""

from __future__ import annotations

import argparse
import types
import typing
from pathlib import Path
from typing import Any

SETTINGS_FLAGS_NOTE = ("Every flag can also be set as M1_ASCEND_<FLAG> in the environment or as a key of the "
                       "--config file; flags win over the environment, which wins over the file.")


def _argument(annotation: Any) -> dict[str, Any]:
    """argparse options for one settings field type (``X | None`` unwrapped)."""
    from pydantic import SecretStr

    kind = annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        kind = next(a for a in typing.get_args(annotation) if a is not type(None))
    if typing.get_origin(kind) is typing.Literal:
        return {"choices": list(typing.get_args(kind))}
    if kind is bool:
        return {"action": argparse.BooleanOptionalAction}
    if kind in (int, float, Path):
        return {"type": kind, "metavar": "PATH" if kind is Path else kind.__name__.upper()}
    if kind is SecretStr:
        return {"metavar": "KEY"}
    return {"metavar": "STR"}


def register(subparsers: argparse._SubParsersAction) -> None:
    from ..server.settings import ServerSettings, field_env_name

    parser = subparsers.add_parser("serve", help="serve the model over an OpenAI-compatible HTTP API",
                                   description="Serve Baichuan-M1 over the OpenAI HTTP API (with no --model: the "
                                               "embedded demo checkpoint).", epilog=SETTINGS_FLAGS_NOTE)
    parser.add_argument("--config", metavar="FILE", help="YAML or JSON file of settings (env M1_ASCEND_CONFIG)")
    for name, field in ServerSettings.model_fields.items():
        default = "" if field.default is None else f"; default {field.default}"
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, default=None,
                            help=f"{field.description} ({field_env_name(name)}{default})", **_argument(field.annotation))
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..server import load_settings, serve
    from ..server.settings import ServerSettings

    cli = {name: getattr(args, name) for name in ServerSettings.model_fields}
    serve(load_settings(cli, config_file=args.config))
    return 0
