"""Baichuan-M1's special operators behind one backend interface (shipped as ``m1_ascend.kernels``).

``get_backend("cpu")`` gives the pure-PyTorch reference; ``get_backend("npu")`` the Ascend
backend, imported lazily so that nothing here imports ``torch_npu`` off device.

From the repository root this folder is also reachable as a top-level ``kernels``, the name of a
Hugging Face library that transformers probes for (and imports) at start-up. Under that name it
stays empty, so nothing is imported or registered twice.
"""

from __future__ import annotations

if __name__ == "m1_ascend.kernels":
    from .device import get_backend, npu_available, resolve_device
    from .interface import HostLengths, KernelBackend, PagedAttentionMetadata
    from .reference import ReferenceBackend

    __all__ = ["HostLengths", "KernelBackend", "PagedAttentionMetadata", "ReferenceBackend", "get_backend",
               "npu_available", "resolve_device"]
