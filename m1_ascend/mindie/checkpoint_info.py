"""What MindIE and the memory plan need to know about a weight directory, checked up front.

MindIE reads ``torch_dtype`` and ``vocab_size`` from the directory's ``config.json`` and refuses
weight directories that others can write; a missing shard only shows up minutes into its start.
All of that is checked here in a second, from the safetensors headers.
"""

from __future__ import annotations

import json
import stat
from dataclasses import dataclass
from pathlib import Path

from ..checkpoint import CheckpointError, load_config, validate_checkpoint
from ..config import BaichuanM1Config
from ..engine.loader import DTYPES
from ..engine.memory_plan import MemoryPlan, plan_memory

# The torch_dtype spellings MindIE accepts (no bf16/fp16 shorthands).
MINDIE_DTYPES = ("bfloat16", "float16", "float32")
GIB = 2**30


@dataclass(frozen=True)
class CheckpointInfo:
    path: Path
    config: BaichuanM1Config
    dtype: str

    @property
    def dtype_bytes(self) -> int:
        return DTYPES[self.dtype].itemsize

    def memory_plan(self, max_seq_len: int, tensor_parallel: int, prefill_tokens: int, npu_memory_gib: float,
                    memory_fraction: float, block_size: int = 128) -> MemoryPlan:
        """Per-card plan when MindIE may use ``memory_fraction`` of each card (its NPU_MEMORY_FRACTION)."""
        return plan_memory(self.config, max_seq_len, block_size, self.dtype_bytes,
                           device_memory_bytes=int(npu_memory_gib * GIB), headroom_fraction=1 - memory_fraction,
                           tensor_parallel=tensor_parallel, prefill_tokens=prefill_tokens)


def inspect_checkpoint(path: str | Path) -> CheckpointInfo:
    """Check a Baichuan-M1 weight directory as MindIE will use it; CheckpointError names the first problem."""
    path = Path(path).absolute()
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such model directory")
    if path.stat().st_mode & stat.S_IWOTH:
        raise CheckpointError(f"{path}: writable by every user; MindIE refuses such weight directories (chmod o-w)")
    config = load_config(path)
    raw = json.loads((path / "config.json").read_text())
    if "torch_dtype" not in raw:
        found = f" (found dtype={raw['dtype']!r}, the transformers>=5 spelling)" if "dtype" in raw else ""
        raise CheckpointError(f"{path}/config.json: no torch_dtype, which MindIE reads{found}; "
                              f"add \"torch_dtype\": \"bfloat16\"")
    if raw["torch_dtype"] not in MINDIE_DTYPES:
        raise CheckpointError(f"{path}/config.json: torch_dtype {raw['torch_dtype']!r} is not one of {', '.join(MINDIE_DTYPES)}")
    if "vocab_size" not in raw:
        raise CheckpointError(f"{path}/config.json: no vocab_size, which MindIE reads")
    validate_checkpoint(path, config)
    return CheckpointInfo(path=path, config=config, dtype=raw["torch_dtype"])
