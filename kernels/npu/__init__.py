"""Ascend NPU backend (torch_npu). Importing this package does not import ``torch_npu``."""

from .backend import NpuBackend

__all__ = ["NpuBackend"]
