"""``m1-ascend selftest``: the NPU operator paths and decode graphs on this 910B, against the CPU reference."""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

from . import CLIError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "selftest", help="check the NPU kernels and decode graphs on this device against the CPU reference",
        description="Run every NPU operator path Baichuan-M1 relies on (FIA windows and layouts, RoPE, cache "
                    "writes with padding slots, conv-K/V kernels, ACL-graph decode vs eager) against the CPU "
                    "reference and write one report. The first thing to run on a new 910B (docs/npu.md).")
    parser.add_argument("--device", choices=["npu"], default="npu", help="the device to check (default: npu)")
    parser.add_argument("--report", type=Path, metavar="FILE", help="write the report as JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from m1_ascend.kernels import npu_available

    if not npu_available():
        raise CLIError("no NPU visible: selftest needs torch_npu with CANN on an Ascend 910B (m1-ascend doctor says why)")
    import torch
    import torch_npu

    from m1_ascend import selftest
    from m1_ascend.kernels.npu.environment import cann_home, cann_version

    device = torch.device("npu", torch_npu.npu.current_device())
    checks = selftest.run_selftest(device)
    environment = {"python": platform.python_version(), "torch": torch.__version__,
                   "torch_npu": getattr(torch_npu, "__version__", None), "cann": cann_version(cann_home())[0],
                   "device": str(torch_npu.npu.get_device_name(device.index))}
    result = selftest.report(checks, environment)
    for check in checks:
        print(f"{check.status.upper():4s}  {check.name}: {check.detail}")
    summary = result["summary"]
    print(f"{summary['pass']} passed, {summary['fail']} failed, {summary['skip']} skipped")
    if args.report:
        args.report.write_text(json.dumps(result, indent=2))
        print(f"report: {args.report}")
    return 1 if summary["fail"] else 0
