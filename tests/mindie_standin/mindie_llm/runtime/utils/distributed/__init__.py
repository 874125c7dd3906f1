"""Stand-in for ``mindie_llm.runtime.utils.distributed`` (MindIE-LLM 8b4871a, runtime/utils/distributed/__init__.py).

``get_parallel_info_manager()`` is None until ``init_distributed`` ran (the runner's ``__init__``
does); the loader and the forward context read it. Deviation: MindIE's ``init_distributed``
creates an HCCL process group even for one NPU (``dist.init_process_group(backend="hccl")``,
__init__.py:53-64, MASTER_IP/MASTER_PORT required), so ``torch.distributed.is_initialized()`` is True
inside MindIE. The stand-in creates no process group (no HCCL on CPU, and it would outlive the test).
"""

from __future__ import annotations

from typing import Any

from mindie_llm.runtime.utils.distributed import parallel_info_manager as _manager_module
from mindie_llm.runtime.utils.distributed.parallel_info_manager import ParallelInfoManager

_PARALLEL_INFO_MANAGER: ParallelInfoManager | None = None


def set_parallel_info_manager(parallel_info_manager: ParallelInfoManager | None) -> None:
    global _PARALLEL_INFO_MANAGER
    _PARALLEL_INFO_MANAGER = parallel_info_manager


def get_parallel_info_manager() -> ParallelInfoManager | None:
    return _PARALLEL_INFO_MANAGER


def init_distributed(rank: int, world_size: int, local_rank: int, llm_config: Any = None,
                     server_config: dict | None = None) -> None:
    """Build this rank's ``ParallelInfoManager`` once per process (MindIE returns early once a process group exists)."""
    global _PARALLEL_INFO_MANAGER
    if _PARALLEL_INFO_MANAGER is not None:
        return
    _manager_module._world = (rank, world_size)
    _PARALLEL_INFO_MANAGER = ParallelInfoManager(local_rank, llm_config, server_config)
