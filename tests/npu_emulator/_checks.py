"""Argument checks shared by the emulated operators, shaped like torch_npu's own failures.

Wrong keywords and types never reach these checks: the ops are registered under the real
schemas (``registry.py``), so the dispatcher refuses them with ``RuntimeError`` as the real
binding does. What is left are the aclnn checks on shapes and values, also ``RuntimeError``.
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
    """``SymInt[]?`` arguments, as the dispatcher hands them over: ints (a 1-D tensor was converted)."""
    if value is None:
        return None
    require(isinstance(value, Sequence) and all(isinstance(v, int) for v in value), op,
            f"{name} must be a list of ints")
    return list(value)


def contiguous(op: str, **tensors: torch.Tensor | None) -> None:
    for name, tensor in tensors.items():
        require(tensor is None or tensor.is_contiguous(), op, f"{name} must be contiguous (non-contiguous is unsupported)")


def no_extras(op: str, extras: dict[str, object]) -> None:
    """Documented features the emulator does not model must stay at their defaults."""
    used = sorted(name for name, value in extras.items() if value not in (None, 0, False, ""))
    if used:
        raise NotImplementedError(f"{op}: the emulator does not model {', '.join(used)}")
