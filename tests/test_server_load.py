"""The load script (benchmarks/load_server.py) against a real server whose queue is too small for the load."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
import types
from pathlib import Path

from server_testing import running_server

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "load_server.py"


def load_script() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("load_server", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_overload_gives_only_completions_and_clean_429s(tiny_model_dir: Path) -> None:
    load = load_script()
    with running_server(tiny_model_dir, served_model_name="m1-tiny", max_num_seqs=2, max_queue=0) as srv:
        report = asyncio.run(load.run_load(srv.url, None, "m1-tiny", concurrency=6, total=18, max_tokens=8,
                                           temperature=0.7))
        rejected = srv.metric("m1_ascend_requests_rejected_queue_full_total")
    assert report.errors == [] and "error" not in report.outcomes
    assert report.outcomes.get("ok", 0) + report.outcomes.get("429", 0) == 18
    assert report.outcomes.get("ok", 0) >= 2 and report.outcomes.get("429", 0) == rejected > 0
    assert report.ttft_p50_s <= report.ttft_p99_s <= report.latency_p99_s
    assert report.tokens_per_s > 0
