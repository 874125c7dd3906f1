"""``m1-ascend openmind-register``: add Baichuan-M1 to an installed openMind's model list and templates."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "openmind-register", help="register Baichuan-M1 (model group + chat template) with an installed openMind",
        description="openmind-cli train looks the checkpoint's model_type up in openMind's own model list; this adds a "
                    "baichuan_m1 group (LoRA targets W_pack,o_proj,gate_proj,up_proj,down_proj) and the Baichuan-M1 "
                    "chat template to it. Run it with openMind's Python, again after reinstalling openMind.")
    parser.add_argument("--openmind-root", metavar="DIR",
                        help="the openmind package, a site-packages or a virtualenv holding it "
                             "(default: the openmind this Python imports)")
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--uninstall", action="store_true", help="remove exactly the entries registration added")
    action.add_argument("--status", action="store_true", help="show the openMind found and the state of the entries")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..finetune import openmind_register as om

    install = om.locate_openmind(args.openmind_root)
    if args.status:
        print("\n".join(om.status(install)))
    elif args.uninstall:
        om.uninstall(install)
        print(f"removed the {om.GROUP_NAME} model group and template from openMind at {install.package_dir}")
    else:
        om.register(install)
        print(f"registered Baichuan-M1 with openMind {install.version or '(version unknown)'} at {install.package_dir}: "
              f"model group and template {om.GROUP_NAME!r}")
        if install.version not in om.CHECKED_VERSIONS:
            print(f"note: checked with openMind {', '.join(om.CHECKED_VERSIONS)} only; its layout matches here")
    return 0
