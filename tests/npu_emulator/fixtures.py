"""pytest fixtures: the emulated torch_npu, and one NPU target that is either emulated or real.

Tests that take ``npu_target`` run twice: against the emulator (marker ``npu_emulated``, part
of ``make test``) and on a real Ascend device (marker ``npu``, ``pytest -m npu`` on a 910B,
skipped where no NPU is visible). Both compare the NPU backend with the CPU reference.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from types import ModuleType

import pytest
import torch

from . import build_module


@pytest.fixture
def torch_npu_emulator(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """Install a fresh emulated ``torch_npu`` for one test (removed afterwards)."""
    module = build_module()
    monkeypatch.setitem(sys.modules, "torch_npu", module)
    return module


@dataclass
class NpuTarget:
    """Where the backend under test runs and how to make a backend there."""

    device: torch.device
    emulated: bool

    @property
    def torch_npu(self) -> ModuleType:
        """The emulator or the real torch_npu, whichever this target runs on."""
        return importlib.import_module("torch_npu")

    def backend(self, **options: object):
        from m1_ascend.kernels.npu import NpuBackend

        return NpuBackend(device=self.device, **options)


@pytest.fixture(params=[pytest.param("emulated", marks=pytest.mark.npu_emulated),
                        pytest.param("device", marks=pytest.mark.npu)])
def npu_target(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> NpuTarget:
    if request.param == "emulated":
        monkeypatch.setitem(sys.modules, "torch_npu", build_module())
        return NpuTarget(torch.device("cpu"), emulated=True)
    from m1_ascend.kernels import npu_available

    if not npu_available():
        pytest.skip("no Ascend NPU visible (needs torch_npu + CANN on a 910B host)")
    import torch_npu

    return NpuTarget(torch.device("npu", torch_npu.npu.current_device()), emulated=False)
