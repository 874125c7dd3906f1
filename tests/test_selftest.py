"""``m1-ascend selftest``: its checks run on the torch_npu emulator here (on a 910B against the real device),
pass for the backend as it is, and fail when an operator convention is broken."""

from __future__ import annotations

import json

import pytest
import torch

from m1_ascend import selftest
from m1_ascend.cli import main

pytest_plugins = ["npu_emulator.fixtures"]


@pytest.mark.npu_emulated
def test_every_check_passes_on_the_emulated_npu(torch_npu_emulator):
    checks = {check.name: check for check in selftest.run_selftest(torch.device("cpu"))}
    failed = {name: check.detail for name, check in checks.items() if check.status == "fail"}
    assert not failed
    assert {"fia_tnd_window", "fia_bsnd_decode_pse_shift[40q/8kv x 128]", "fia_bsnd_decode_pse_shift[20q/2kv x 256]",
            "fia_paged_prefill_d256", "scatter_negative_slots", "decode_graph_vs_eager"} <= set(checks)
    assert checks["fia_tnd_window"].measured["route"] == "fused FIA"
    assert checks["conv_kv[custom]"].status == "skip"  # no Ascend C build off device
    assert checks["decode_graph_vs_eager"].measured["graph_step_ms"] > 0
    report = selftest.report(list(checks.values()), {"device": "emulated"})
    assert report["summary"]["fail"] == 0 and json.dumps(report)


@pytest.mark.npu_emulated
def test_a_window_one_key_too_wide_fails_the_check(torch_npu_emulator, monkeypatch):
    from m1_ascend.kernels.npu import attention

    band = attention._band
    monkeypatch.setattr(attention, "_band", lambda window, device: {**band(window, device), "pre_tokens": window}
                        if window else band(window, device))
    check = selftest.check_tnd_window(selftest.NpuBackend(device="cpu"), torch.device("cpu"))
    assert check.status == "fail"


def test_cli_without_an_npu_says_so(capsys):
    assert main(["selftest", "--device", "npu"]) == 1
    assert "no NPU visible" in capsys.readouterr().err
