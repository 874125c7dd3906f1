"""m1-ascendctl and the acceptance run, off-device: MindIE start-up checks, and the whole run against `m1-ascend serve`."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from deploy_testing import DEPLOY, M1_ASCEND, mindie_ready_copy, run_script

from m1_ascend.mindie.generator import ServiceOptions, build_config, write_config
from m1_ascend.weights import write_manifest

CTL = DEPLOY / "bin/m1-ascendctl"
ACCEPTANCE = DEPLOY / "acceptance/acceptance.sh"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_env(etc: Path, tmp: Path, **target_env: str) -> Path:
    etc.mkdir(exist_ok=True)
    (etc / "common.env").write_text(f"M1_ASCEND_BIN={M1_ASCEND}\nM1_RUN_DIR={tmp}/run\nM1_LOG_DIR={tmp}/log\n"
                                    "M1_START_TIMEOUT=240\nM1_STOP_TIMEOUT=60\n")
    for target, body in target_env.items():
        (etc / f"{target}.env").write_text(body)
    return etc


@pytest.fixture
def weights(tmp_path: Path, tiny_model_dir: Path) -> Path:
    directory = mindie_ready_copy(tiny_model_dir, tmp_path / "weights")
    write_manifest(directory, progress=False)
    return directory


@pytest.fixture
def mindie_etc(weights: Path, tmp_path: Path) -> Path:
    """A MindIE install dir holding a generated config for ``weights``, and the ctl settings pointing at it."""
    home = tmp_path / "mindie-service"
    (home / "conf").mkdir(parents=True)
    config = home / "conf/config.json"
    write_config(build_config(ServiceOptions(model_path=weights, npus=[0], https=False)), config)
    return write_env(tmp_path / "etc", tmp_path, mindie=f"MINDIE_HOME={home}\nMINDIE_CONFIG={config}\n")


def test_mindie_start_refuses_altered_weights(weights: Path, mindie_etc: Path) -> None:
    shard = next(weights.glob("model-*.safetensors"))
    shard.write_bytes(shard.read_bytes()[:-1] + b"\x01")
    refused = run_script(CTL, "--etc", str(mindie_etc), "start", "mindie")
    assert refused.returncode == 1
    assert f"altered: {shard.name}" in refused.stdout
    assert "refusing to start mindie: weights" in refused.stderr and "M1_ALLOW_WEIGHT_MISMATCH=1 overrides" in refused.stderr
    assert run_script(CTL, "--etc", str(mindie_etc), "status", "mindie").returncode == 3


@pytest.mark.slow_e2e
def test_mindie_override_and_missing_daemon(weights: Path, mindie_etc: Path, tmp_path: Path) -> None:
    (weights / "extra.bin").write_bytes(b"dropped in")
    allowed = run_script(CTL, "--etc", str(mindie_etc), "start", "mindie", env={"M1_ALLOW_WEIGHT_MISMATCH": "1"})
    assert allowed.returncode == 1
    assert "starting because M1_ALLOW_WEIGHT_MISMATCH=1" in allowed.stderr
    assert f"MindIE daemon not found at {tmp_path}/mindie-service/bin/mindieservice_daemon" in allowed.stderr


def serve_env(weights: Path, port: int) -> str:
    return f"M1_ASCEND_MODEL={weights}\nM1_ASCEND_DEVICE=cpu\nM1_ASCEND_PORT={port}\n"


def test_acceptance_run_against_serve_records_the_greedy_answer(weights: Path, tmp_path: Path) -> None:
    etc = write_env(tmp_path / "etc", tmp_path, serve=serve_env(weights, free_port()))
    expected = tmp_path / "expected.json"
    result = run_script(ACCEPTANCE, "--target", "serve", "--etc", str(etc), "--record", str(expected), "--skip-doctor")
    assert result.returncode == 0, result.stdout + result.stderr
    for step in ("2 verify-weights PASS", "3 start          PASS", "4 health         PASS", "5 greedy         PASS",
                 "6 stop           PASS", "ACCEPTANCE PASSED"):
        assert step in result.stdout
    record = json.loads(expected.read_text())
    assert record["text"] and record["max_tokens"] == 32
    assert record["weights_manifest_sha256"]
    assert run_script(CTL, "--etc", str(etc), "status", "serve").returncode == 3  # stopped again


@pytest.mark.slow_e2e
def test_acceptance_detects_changed_answers_and_refused_weights(weights: Path, tmp_path: Path) -> None:
    etc = write_env(tmp_path / "etc", tmp_path, serve=serve_env(weights, free_port()))
    expected = tmp_path / "expected.json"
    args = ["--target", "serve", "--etc", str(etc), "--skip-doctor"]
    recorded = run_script(ACCEPTANCE, "--target", "serve", "--etc", str(etc), "--allow-cpu", "--record", str(expected))
    assert recorded.returncode == 0 and "1 doctor         PASS" in recorded.stdout
    passed = run_script(ACCEPTANCE, *args, "--expected", str(expected))
    assert passed.returncode == 0 and "PASS: greedy answer matches" in passed.stdout

    changed = json.loads(expected.read_text())
    changed["text"] = changed["text"] + "!"
    (tmp_path / "changed.json").write_text(json.dumps(changed))
    failed = run_script(ACCEPTANCE, *args, "--expected", str(tmp_path / "changed.json"))
    assert failed.returncode == 1 and "5 greedy         FAIL" in failed.stdout and "6 stop           PASS" in failed.stdout

    (weights / "config.json").write_text((weights / "config.json").read_text() + " ")
    refused = run_script(CTL, "--etc", str(etc), "start", "serve")
    assert refused.returncode == 1 and "WeightIntegrityError" in refused.stderr
    assert run_script(ACCEPTANCE, *args, "--expected", str(expected)).returncode == 1
