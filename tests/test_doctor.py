"""``m1-ascend doctor`` off device, with a fake CANN tree, and with the emulated torch_npu."""

from __future__ import annotations

import json

import pytest

from m1_ascend.cli import main

pytest_plugins = ["npu_emulator.fixtures"]


def doctor(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    assert main(["doctor", "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_off_device_reports_the_cpu_reference_and_the_14b_plan(capsys, monkeypatch):
    for name in ("ASCEND_HOME_PATH", "ASCEND_TOOLKIT_HOME", "ASCEND_CUSTOM_OPP_PATH", "ASCEND_OPP_PATH"):
        monkeypatch.delenv(name, raising=False)
    report = doctor(capsys)
    assert report["backend"]["auto"] == "reference (CPU)"
    assert report["torch_npu"]["installed"] is False
    assert report["custom_op"]["npu_kernel"] is False
    ops = {(row["op"], row["layers"]): row for row in report["plan"]["ops"]}
    sliding_prefill = ops[("paged_attention", "sliding (40q/8kv x 128), prefill/mixed")]
    assert "TND" in sliding_prefill["kernel"] and "pre_tokens=8191" in sliding_prefill["kernel"]
    assert "TND" not in ops[("paged_attention", "global (20q/2kv x 256), prefill/mixed")]["kernel"]
    assert ops[("rotary", "global (20q/2kv x 256)")]["kernel"].startswith("npu_rotary_mul")
    assert ops[("conv_kv", "all")]["fused"] is False


def test_text_report_names_fallbacks(capsys):
    assert main(["doctor", "--model", "tiny", "--dtype", "float32", "--block-size", "16"]) == 0
    text = capsys.readouterr().out
    assert "device='auto' -> reference (CPU)" in text
    assert "fp16/bf16" in text and "composed torch ops" in text


def test_cann_version_and_custom_op_vendor_are_found(capsys, monkeypatch, tmp_path):
    home = tmp_path / "ascend-toolkit" / "latest"
    (home / "x86_64-linux").mkdir(parents=True)
    (home / "x86_64-linux" / "ascend_toolkit_install.info").write_text("package_name=Ascend-cann-toolkit\nversion=8.5.0\n")
    vendor = tmp_path / "opp" / "vendors" / "m1_ascend"
    (vendor / "op_api" / "lib").mkdir(parents=True)
    (vendor / "op_api" / "lib" / "libcust_opapi.so").write_bytes(b"")
    monkeypatch.setenv("ASCEND_HOME_PATH", str(home))
    monkeypatch.setenv("ASCEND_CUSTOM_OPP_PATH", str(vendor))
    report = doctor(capsys, "--model", "tiny")
    assert report["cann"]["version"] == "8.5.0"
    assert report["custom_op"]["vendor_dirs"] == [str(vendor)]


@pytest.mark.npu_emulated
def test_with_torch_npu_present_auto_selects_the_npu(capsys, torch_npu_emulator):
    report = doctor(capsys, "--model", "tiny")
    assert report["backend"]["auto"] == "npu"
    assert report["torch_npu"]["device_count"] == 1
    assert report["torch_npu"]["device_names"] == [torch_npu_emulator.npu.get_device_name(0)]


def test_expect_npu_off_device_is_not_ready_and_names_what_is_missing(capsys, monkeypatch):
    for name in ("ASCEND_HOME_PATH", "ASCEND_TOOLKIT_HOME"):
        monkeypatch.delenv(name, raising=False)
    assert main(["doctor", "--model", "tiny", "--expect", "npu"]) == 3
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("verdict: NOT READY for npu: torch_npu is not installed")
    assert "CANN not found" in last
    assert main(["doctor", "--model", "tiny", "--expect", "cpu"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("verdict: READY for cpu")


@pytest.mark.npu_emulated
def test_expect_npu_is_ready_with_torch_npu_cann_and_a_device(capsys, monkeypatch, tmp_path, torch_npu_emulator):
    home = tmp_path / "ascend-toolkit" / "latest"
    home.mkdir(parents=True)
    monkeypatch.setenv("ASCEND_HOME_PATH", str(home))
    assert main(["doctor", "--json", "--model", "tiny", "--expect", "npu"]) == 0
    verdict = json.loads(capsys.readouterr().out)["verdict"]
    assert verdict["ready"] is True and "1 NPU(s) visible" in verdict["detail"]
    monkeypatch.setattr(torch_npu_emulator.npu, "device_count", lambda: 0)
    assert main(["doctor", "--model", "tiny", "--expect", "npu"]) == 3
    assert "no NPU visible" in capsys.readouterr().out
