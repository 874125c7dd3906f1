"""``m1-ascend mindie-config``: write, check or size a MindIE Service config.json for Baichuan-M1."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "mindie-config", help="write or check a MindIE Service config.json for Baichuan-M1",
        description="Write a complete MindIE Service config.json whose batch limits come from the Baichuan-M1 "
                    "memory plan (--model-path, --npus), check an existing one (--check), or print the sizing "
                    "table (--table).")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--model-path", type=Path, metavar="DIR", help="Baichuan-M1 weight directory (writes a config)")
    mode.add_argument("--check", type=Path, metavar="CONFIG", help="validate an existing config.json")
    mode.add_argument("--table", action="store_true",
                      help="print the sizing table of the 14B model for 8k/32k context on 1/2/4/8 cards")
    parser.add_argument("--npus", help="logical NPU ids, e.g. 0,1,2,3 (required with --model-path)")
    parser.add_argument("--max-seq-len", type=int, help="input + output tokens per request (default: min(8192, model max))")
    parser.add_argument("--max-input-len", type=int, help="longest prompt in tokens (default: 3/4 of --max-seq-len)")
    parser.add_argument("--max-prefill-tokens", type=int, help="tokens per prefill batch (default: max(input, 8192))")
    parser.add_argument("--tensor-parallel", type=int, metavar="N",
                        help="cards per model instance (default: all listed, or the largest even split)")
    parser.add_argument("--host", default="127.0.0.1", help="business API address (default 127.0.0.1)")
    parser.add_argument("--management-host", default="127.0.0.1", help="health/management API address")
    parser.add_argument("--port", type=int, default=1025, help="business API port (default 1025)")
    parser.add_argument("--management-port", type=int, default=1026, help="health/management port (default 1026)")
    parser.add_argument("--metrics-port", type=int, default=1027, help="Prometheus metrics port (default 1027)")
    parser.add_argument("--https", action=argparse.BooleanOptionalAction, default=True,
                        help="TLS on the endpoints (default on)")
    parser.add_argument("--cert-dir", type=Path, metavar="DIR",
                        help="the TLS material as it sits (or will sit) in <MindIE dir>/security (ca/, certs/, keys/, "
                             "pass/): checked for the files the config names")
    parser.add_argument("--npu-memory-gib", type=float, default=64.0, help="memory of one NPU in GiB (default 64)")
    parser.add_argument("--memory-fraction", type=float, default=0.8,
                        help="share of each card MindIE may use, its NPU_MEMORY_FRACTION (default 0.8)")
    parser.add_argument("--model-name", help="served model name (default: the weight directory's name)")
    parser.add_argument("--backend", default="atb",
                        help="MindIE model backend: atb, or torch with the model folder from "
                             "`m1-ascend mindie-adapter install` (default atb)")
    parser.add_argument("--no-port-check", action="store_true",
                        help="do not test that the ports are free (when writing a config for another host)")
    parser.add_argument("--mindie-home", type=Path, metavar="DIR",
                        help="with --check: MindIE install dir the TLS paths are relative to "
                             "(default: the parent of conf/ when the file is <dir>/conf/config.json)")
    parser.add_argument("-o", "--output", type=Path, default=Path("config.json"), help="output file (default config.json)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.check:
        return _check(args)
    if args.table:
        return _table(args)
    return _generate(args)


def _generate(args: argparse.Namespace) -> int:
    from ..mindie.generator import GenerationError, ServiceOptions, build_config, summary, write_config
    from ..mindie.host import bind_problem, missing_npus, parse_npu_ids, visible_npus

    if not args.npus:
        raise GenerationError("--npus is required with --model-path (e.g. --npus 0,1)")
    npus = parse_npu_ids(args.npus)
    listing = visible_npus()
    missing = missing_npus(npus, listing)
    if missing:
        raise GenerationError(f"NPU id {','.join(map(str, missing))} does not exist on this host ({listing.describe()})")
    options = ServiceOptions(
        model_path=args.model_path, npus=npus, max_seq_len=args.max_seq_len, max_input_len=args.max_input_len,
        max_prefill_tokens=args.max_prefill_tokens, tensor_parallel=args.tensor_parallel, host=args.host,
        management_host=args.management_host, port=args.port, management_port=args.management_port,
        metrics_port=args.metrics_port, https=args.https, cert_dir=args.cert_dir, npu_memory_gib=args.npu_memory_gib,
        memory_fraction=args.memory_fraction, backend=args.backend, model_name=args.model_name,
    )
    generated = build_config(options)
    if not args.no_port_check:
        endpoints = {(args.host, args.port), (args.management_host, args.management_port),
                     (args.management_host, args.metrics_port)}
        for host, port in sorted(endpoints):
            problem = bind_problem(host, port)
            if problem:
                raise GenerationError(problem)
    write_config(generated, args.output)
    print(summary(generated, args.output))
    return 0


def _check(args: argparse.Namespace) -> int:
    from ..mindie.check import HostAssumptions, check_config_file
    from ..mindie.host import visible_npus

    problems = check_config_file(args.check, args.mindie_home, visible_npus(),
                                 HostAssumptions(args.npu_memory_gib, args.memory_fraction), args.cert_dir)
    for problem in problems:
        print(problem)
    errors = sum(p.severity == "error" for p in problems)
    print(f"{args.check}: {errors} error(s), {len(problems) - errors} warning(s)")
    return 1 if errors else 0


def _table(args: argparse.Namespace) -> int:
    from ..config import preset_config
    from ..mindie.sizing import preset_info, sizing_table

    print(sizing_table(preset_info(preset_config("baichuan-m1-14b")), args.npu_memory_gib, args.memory_fraction))
    return 0
