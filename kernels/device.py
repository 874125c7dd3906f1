"""Which backend serves a device: ``cpu`` (the reference), ``npu`` (torch_npu, imported lazily) or ``auto``."""

from __future__ import annotations

from .interface import KernelBackend
from .reference import ReferenceBackend


def npu_available() -> bool:
    """True when ``torch_npu`` imports and reports at least one visible NPU."""
    import importlib.util

    if importlib.util.find_spec("torch_npu") is None:
        return False
    try:
        import torch_npu

        return bool(torch_npu.npu.is_available() and torch_npu.npu.device_count() > 0)
    except Exception:  # a broken CANN install must not break CPU use
        return False


def resolve_device(device: str) -> str:
    """``auto`` becomes ``npu`` where an NPU is visible, else ``cpu``; anything else is refused."""
    if device == "auto":
        return "npu" if npu_available() else "cpu"
    if device not in ("cpu", "npu"):
        raise ValueError(f"unknown device {device!r}; use 'cpu', 'npu' or 'auto'")
    return device


def get_backend(device: str = "cpu") -> KernelBackend:
    """Pick the backend for a device name: ``cpu``, ``npu`` or ``auto``."""
    if resolve_device(device) == "cpu":
        return ReferenceBackend()
    from .npu import NpuBackend  # lazy: torch_npu exists only on Ascend hosts

    return NpuBackend()
