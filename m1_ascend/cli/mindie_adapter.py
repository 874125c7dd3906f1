"""``m1-ascend mindie-adapter install|uninstall|status``: Baichuan-M1 inside MindIE-LLM's torch runtime."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "mindie-adapter", help="install Baichuan-M1 as a model of MindIE-LLM's torch runtime",
        description="Install, remove or inspect the baichuan_m1 model folder in a MindIE-LLM installation.")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action, text in (("install", "write mindie_llm/runtime/models/baichuan_m1/"),
                         ("uninstall", "remove exactly the files install wrote"),
                         ("status", "show the MindIE found, its support status and the installed files")):
        sub = actions.add_parser(action, help=text)
        sub.add_argument("--mindie-root", metavar="PATH",
                         help="MindIE-LLM install: site-packages, the mindie_llm package or a run-package "
                              "install folder (default: the mindie_llm this Python imports)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from m1_ascend.mindie_adapter import install

    mindie = install.locate_mindie(args.mindie_root)
    if args.action == "install":
        written = install.install(mindie)
        print(f"installed Baichuan-M1 into MindIE-LLM {mindie.version or '(version unknown)'} (torch runtime found): "
              f"{mindie.target_dir} ({len(written)} files)")
        print('set "backendType": "torch" for the model (m1-ascend mindie-config --backend torch)')
    elif args.action == "uninstall":
        removed = install.uninstall(mindie)
        print(f"removed {len(removed)} files from {mindie.target_dir}")
    else:
        print("\n".join(install.status(mindie)))
    return 0
