"""Stand-in for ``mindie_llm.runtime.utils.distributed.utils`` (MindIE-LLM 8b4871a, runtime/utils/distributed/utils.py).

Deviation: MindIE's ``set_device`` returns ``torch.device(f"npu:{npu_id}")`` (or the rank table's
device) after ``torch.npu.set_device`` (utils.py:78-123); the runner builds the model ``with`` that
device and moves every metadata tensor there. On a CPU machine the device is ``cpu``; the
emulated torch_npu's tensors are CPU tensors. Rank tables are not modelled.
"""

from __future__ import annotations

import torch


def even_divide(numerator: int, denominator: int) -> int:
    """Exact division or ValueError (utils.py:58-75)."""
    if numerator % denominator != 0:
        raise ValueError(f"{numerator} is not evenly divisible by {denominator}.")
    return numerator // denominator


def set_device(rank: int, npu_id: int | None = None) -> torch.device:
    """The device the runner uses; ``cpu`` here (see the module docstring)."""
    return torch.device("cpu")
