"""What the kernels need from ``torch.library`` across the torch versions they run under."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


def register_fake(qualname: str, library: torch.library.Library) -> Callable[[Callable[..., Any]], Any]:
    """Decorator registering an op's fake (meta) implementation: ``torch.library.register_fake`` in
    torch >= 2.4, ``impl_abstract`` in torch 2.1-2.3 (openMind's environment imports these modules)."""
    register = getattr(torch.library, "register_fake", None) or torch.library.impl_abstract
    return register(qualname, lib=library)
