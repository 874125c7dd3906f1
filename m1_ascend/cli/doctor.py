"""``m1-ascend doctor``: what Ascend software this host has and which kernel each op will use.

Reports torch / torch_npu / CANN versions, visible NPUs, whether the ConvKv custom operator is
installed, Triton / triton-ascend, the backend ``device="auto"`` picks, and, for a model
geometry, which torch_npu operator serves each op on an NPU and which fall back to composed
torch ops (and why). Works off device, where it reports the CPU reference backend.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from typing import Any

NOT_READY = 3  # exit status of `doctor --expect` when the host cannot serve on the expected device


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "doctor", help="check the Ascend stack (torch_npu, CANN, devices, custom ops) and the kernel plan",
        description="Report the torch_npu/CANN installation, visible NPUs, the ConvKv custom operator and "
                    "Triton, the backend device='auto' selects, and which NPU kernel each op of the model uses.")
    parser.add_argument("--model", default="baichuan-m1-14b", metavar="DIR|PRESET",
                        help="checkpoint directory or config preset whose geometry is planned (default: baichuan-m1-14b)")
    parser.add_argument("--dtype", choices=["bfloat16", "float16", "float32"], default="bfloat16",
                        help="model dtype on the NPU (default: bfloat16)")
    parser.add_argument("--block-size", type=int, default=128, help="KV cache block size in tokens (default: 128)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--expect", choices=["npu", "cpu"],
                        help=f"end with a verdict on whether this host can serve on that device; exit {NOT_READY} "
                             "when it cannot (install-bundle.sh runs this last)")
    parser.set_defaults(handler=run)


def _load_config(model: str):
    from ..config import BaichuanM1Config, preset_config

    if os.path.isdir(model):
        return BaichuanM1Config.from_pretrained(model)
    return preset_config(model)


def op_plan(config: Any, dtype: Any, block_size: int, allow_tnd: bool) -> list[dict[str, Any]]:
    """One row per (op, layer kind): the NPU kernel or the composed fallback and its reason."""
    from m1_ascend.kernels.npu import support

    rows = []

    def add(route: support.Route, layers: str) -> None:
        rows.append({"op": route.op, "layers": layers, "kernel": route.kernel, "fused": route.fused,
                     "reason": route.reason})

    add(support.rms_norm_route(dtype, dtype), "all")
    add(support.silu_and_mul_route(dtype), "all")
    kinds = {"global": [i for i in range(config.num_hidden_layers) if not config.is_sliding(i)],
             "sliding": [i for i in range(config.num_hidden_layers) if config.is_sliding(i)]}
    for kind, layers in kinds.items():
        if not layers:
            continue
        n_heads, n_kv, head_dim = config.layer_heads(layers[0])
        window = config.sliding_window if kind == "sliding" else None
        label = f"{kind} ({n_heads}q/{n_kv}kv x {head_dim})"
        add(support.rotary_route(head_dim), label)
        for prefill in (True, False):
            route = support.paged_attention_route(n_heads, n_kv, head_dim, dtype, block_size, window, prefill,
                                                  allow_tnd)
            add(route, f"{label}, {'prefill/mixed' if prefill else 'decode'}")
        add(support.dense_attention_route(n_heads, n_kv, head_dim, dtype), label)
    return rows


def collect(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from m1_ascend.kernels import npu_available
    from m1_ascend.kernels.npu import custom_op, environment
    from m1_ascend.kernels.npu.backend import TND_ENV, TRITON_ENV, choose_conv_kv, triton_ascend_installed

    home = environment.cann_home()
    version, version_file = environment.cann_version(home)
    npu = environment.probe_torch_npu()
    on_npu = npu_available()
    conv_impl, conv_route = choose_conv_kv()
    allow_tnd = os.environ.get(TND_ENV, "1") != "0"
    dtype = getattr(torch, args.dtype)
    plan = op_plan(_load_config(args.model), dtype, args.block_size, allow_tnd)
    plan.append({"op": "conv_kv", "layers": "all", "kernel": conv_route.kernel, "fused": conv_route.fused,
                 "reason": conv_route.reason})
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_npu": npu,
        "cann": {"home": str(home) if home else None, "version": version, "version_file": version_file},
        "visible_devices_env": os.environ.get("ASCEND_RT_VISIBLE_DEVICES"),
        "custom_op": {"extension": custom_op.EXTENSION, "vendor_dirs": environment.custom_op_vendor_dirs(),
                      "npu_kernel": conv_impl == "custom", "problem": None if conv_impl == "custom" else conv_route.reason},
        "triton": {"version": environment.package_version("triton"), "triton_ascend": triton_ascend_installed(),
                   "enabled_on_npu": os.environ.get(TRITON_ENV) == "1"},
        "backend": {"auto": "npu" if on_npu else "reference (CPU)",
                    "reason": "torch_npu imports and sees an NPU" if on_npu else "no usable NPU: torch_npu missing, "
                              "not importable, or no device visible"},
        "plan": {"model": args.model, "dtype": args.dtype, "block_size": args.block_size, "tnd_allowed": allow_tnd,
                 "ops": plan},
    }


def render(report: dict[str, Any]) -> str:
    npu, cann, plan = report["torch_npu"], report["cann"], report["plan"]
    if not npu["installed"]:
        npu_line = "not installed"
    elif npu["import_error"]:
        npu_line = f"{npu['version']} (import fails: {npu['import_error']})"
    else:
        npu_line = f"{npu['version']}, {npu['device_count']} device(s) {', '.join(npu['device_names'])}".rstrip()
    custom = report["custom_op"]
    triton = report["triton"]
    lines = [
        f"python        {report['python']}",
        f"torch         {report['torch']}",
        f"torch_npu     {npu_line}",
        f"CANN          {cann['version'] or 'not found'}" + (f" ({cann['home']})" if cann["home"] else ""),
        f"visible NPUs  ASCEND_RT_VISIBLE_DEVICES={report['visible_devices_env'] or '(unset)'}",
        f"ConvKv op     {'installed' if custom['npu_kernel'] else 'not available: ' + str(custom['problem'])}",
        f"triton        {triton['version'] or 'not installed'}; triton-ascend "
        f"{'installed' if triton['triton_ascend'] else 'not installed'}"
        + (", enabled" if triton["enabled_on_npu"] else ""),
        f"backend       device='auto' -> {report['backend']['auto']} ({report['backend']['reason']})",
        "",
        f"NPU kernel plan for {plan['model']} ({plan['dtype']}, block size {plan['block_size']}):",
    ]
    width = max(len(f"{row['op']} [{row['layers']}]") for row in plan["ops"])
    for row in plan["ops"]:
        where = f"{row['op']} [{row['layers']}]".ljust(width)
        lines.append(f"  {where}  {row['kernel']}" + (f"  -- {row['reason']}" if row["reason"] else ""))
    fallbacks = [row for row in plan["ops"] if not row["fused"]]
    lines.append(f"{len(fallbacks)} op(s) use composed torch fallbacks on the NPU." if fallbacks
                 else "Every op has a fused NPU kernel.")
    return "\n".join(lines)


def verdict(report: dict[str, Any], expect: str) -> tuple[bool, str]:
    """Whether this host serves on ``expect`` ("npu": torch_npu imports, CANN found, NPUs visible)."""
    if expect == "cpu":
        return True, f"READY for cpu: the CPU reference backend on torch {report['torch']}"
    npu, cann = report["torch_npu"], report["cann"]
    problems = []
    if not npu["installed"]:
        problems.append("torch_npu is not installed")
    elif npu["import_error"]:
        problems.append(f"torch_npu does not import ({npu['import_error']})")
    elif not npu["device_count"]:
        problems.append("no NPU visible (check the driver with npu-smi info, and ASCEND_RT_VISIBLE_DEVICES)")
    if cann["home"] is None:
        problems.append("CANN not found (install the toolkit, then source /usr/local/Ascend/ascend-toolkit/set_env.sh)")
    if problems:
        return False, "NOT READY for npu: " + "; ".join(problems)
    return True, (f"READY for npu: torch_npu {npu['version']} imports, CANN {cann['version'] or '(version unknown)'} "
                  f"at {cann['home']}, {npu['device_count']} NPU(s) visible")


def run(args: argparse.Namespace) -> int:
    report = collect(args)
    ready, line = verdict(report, args.expect) if args.expect else (True, "")
    if args.expect:
        report["verdict"] = {"expect": args.expect, "ready": ready, "detail": line}
    print(json.dumps(report, indent=2) if args.json else render(report) + (f"\nverdict: {line}" if line else ""))
    return 0 if ready else NOT_READY
