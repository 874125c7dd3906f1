"""Stand-in for ``mindie_llm.runtime.utils.torch_utils`` (MindIE-LLM 8b4871a, runtime/utils/torch_utils.py:15-38).

``ModelRunnerExp.load_weights`` builds the model under the checkpoint dtype with this.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def set_default_torch_dtype(dtype: torch.dtype) -> Iterator[None]:
    """Make ``dtype`` torch's default dtype inside the block; the previous one comes back after it."""
    old_dtype = torch.get_default_dtype()
    try:
        torch.set_default_dtype(dtype)
        yield
    finally:
        torch.set_default_dtype(old_dtype)
