"""``m1-ascend serve`` as a user runs it: flags + environment + config file, SIGTERM, and startup errors.

The in-process tests call the CLI's ``main``; the SIGTERM test runs a real subprocess (slow_e2e; the same
drain path runs by default in test_server_ops.py's graceful-shutdown test).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from server_testing import STARTUP_TIMEOUT, free_port, wait_for

from m1_ascend.cli import main


@pytest.mark.slow_e2e  # a fresh interpreter importing torch: tens of seconds on a busy machine
def test_sigterm_ends_in_flight_streams_cleanly(tiny_model_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "serve.yaml"
    audit = tmp_path / "audit.jsonl"
    # With decode graphs on (the NPU default; compiled here): the graph path serves and drains like the eager one.
    config.write_text(f"served-model-name: cli-tiny\nshutdown_grace_seconds: 1\naudit_log: {audit}\n"
                      "enforce-eager: false\nmax-num-seqs: 2\n")
    env = {**os.environ, "M1_ASCEND_API_KEY": "cli-key", "M1_ASCEND_PORT": str(port), "M1_ASCEND_DEVICE": "cpu"}
    command = [sys.executable, "-m", "m1_ascend", "serve", "--model", str(tiny_model_dir), "--config", str(config)]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        def healthy() -> bool:
            assert proc.poll() is None, proc.stdout.read()
            try:
                return httpx.get(f"{url}/health", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(healthy, STARTUP_TIMEOUT, "the CLI server to become ready", interval=0.2)
        body = {"model": "cli-tiny", "prompt": "keep going", "max_tokens": 500, "stream": True, "ignore_eos": True}
        with httpx.stream("POST", f"{url}/v1/completions", json=body, headers={"Authorization": "Bearer cli-key"},
                          timeout=60) as response:
            assert response.status_code == 200
            events = []
            for line in response.iter_lines():
                if line.startswith("data: "):
                    events.append(line.removeprefix("data: "))
                    if len(events) == 1:
                        proc.send_signal(signal.SIGTERM)
        assert events[-1] == "[DONE]"
        final = json.loads(events[-2])["choices"][0]
        assert final["finish_reason"] in ("abort", "length")
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = proc.stdout.read()
    assert "Shutting down" in output and "Traceback" not in output
    assert "decode graphs: bucket 1 (2/2)" in output
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/health", timeout=2)
    (record,) = [json.loads(line) for line in audit.read_text().splitlines()]
    assert record["key_id"] == "default" and record["model"] == "cli-tiny"
    assert record["finish_reason"] == final["finish_reason"] and record["status"] == 200


def test_bad_setting_is_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--model", "/no/such/checkpoint"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == "m1-ascend serve: error: model: no such directory /no/such/checkpoint"


def test_unloadable_model_stops_the_server(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "not-a-checkpoint"
    empty.mkdir()
    assert main(["serve", "--model", str(empty), "--port", str(free_port()), "--device", "cpu"]) == 1
    assert "m1-ascend serve: error: loading the model failed" in capsys.readouterr().err
