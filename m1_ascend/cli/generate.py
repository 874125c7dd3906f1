"""Placeholder replaced by the engine's generate command."""

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("generate", help="generate text with the engine")
    parser.set_defaults(handler=lambda args: 0)
