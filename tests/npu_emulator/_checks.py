"""Argument checks shared by the emulated operators, shaped like torch_npu's own failures.

The real binding rejects wrongly typed arguments with ``TypeError`` (pybind/schema) and
unsupported shapes or values with ``RuntimeError`` (aclnn checks); the emulator does the same.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


class Unsupported(RuntimeError):
    """The documented operator refuses these arguments."""


def require(ok: bool, op: str, message: str) -> None:
    if not ok:
        raise Unsupported(f"{op}: {message}")


def int_list(op: str, name: str, value: object) -> list[int] | None:
    """``SymInt[]?`` arguments: a Python list/tuple of ints, never a tensor."""
    if value is None:
        return None
    if isinstance(value, torch.Tensor) or not isinstance(value, Sequence):
        raise TypeError(f"{op}: {name} must be a list of ints (SymInt[]), got {type(value).__name__}")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise TypeError(f"{op}: {name} must contain Python ints only")
    return list(value)


def contiguous(op: str, **tensors: torch.Tensor | None) -> None:
    for name, tensor in tensors.items():
        require(tensor is None or tensor.is_contiguous(), op, f"{name} must be contiguous (non-contiguous is unsupported)")


def no_extras(op: str, extras: dict[str, object]) -> None:
    """Documented features the emulator does not model must stay at their defaults."""
    used = sorted(name for name, value in extras.items() if value not in (None, 0, False, ""))
    if used:
        raise NotImplementedError(f"{op}: the emulator does not model {', '.join(used)}")
