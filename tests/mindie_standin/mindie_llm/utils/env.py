"""Stand-in for ``mindie_llm.utils.env`` (MindIE-LLM 8b4871a, utils/env.py): the process-wide ``ENV``.

The fields, their environment variables and defaults are MindIE's (env.py:78-130). The runtime reads
``model_runner_exp`` (set True by ``Generator.__init__`` for ``backend_type == "torch"``,
generator.py:304-305), ``async_inference`` and ``use_mb_swapper``. ``__post_init__`` keeps the
range checks of the fields the stand-in reads; the benchmark-file and log-size checks are not modelled.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field


def _env_int(name: str, default: int) -> int:
    """MindIE falls back to the default (and logs) when the variable is not an integer (env.py:166-174)."""
    try:
        return int(os.getenv(name, str(default)))
    except ValueError:
        return default


def _visible_devices() -> list[int] | None:
    value = os.getenv("ASCEND_RT_VISIBLE_DEVICES")
    return None if value is None or not value.strip() else [int(x) for x in value.split(",")]


@dataclass
class EnvVar:
    reserved_memory_gb: int = field(default_factory=lambda: _env_int("RESERVED_MEMORY_GB", 0))
    visible_devices: list[int] | None = field(default_factory=_visible_devices)
    bind_cpu: bool = field(default_factory=lambda: os.getenv("BIND_CPU", "1") == "1")
    memory_fraction: float = field(default_factory=lambda: float(os.getenv("NPU_MEMORY_FRACTION", "0.8")))
    benchmark_enable: bool = field(default_factory=lambda: os.getenv("MINDIE_LLM_BENCHMARK_ENABLE", "0") == "1")
    benchmark_enable_async: bool = field(default_factory=lambda: os.getenv("MINDIE_LLM_BENCHMARK_ENABLE", "0") == "2")
    benchmark_filepath: str = field(default_factory=lambda: os.getenv(
        "MINDIE_LLM_BENCHMARK_FILEPATH", os.path.join(os.getenv("MINDIE_LLM_HOME_PATH", ""), "logs/benchmark.jsonl")))
    benchmark_reserving_ratio: float = field(
        default_factory=lambda: float(os.getenv("MINDIE_LLM_BENCHMARK_RESERVING_RATIO", "0.1")))
    log_file_level: str = field(default_factory=lambda: os.getenv("MINDIE_LOG_LEVEL", "INFO"))
    log_to_file: str = field(default_factory=lambda: os.getenv("MINDIE_LOG_TO_FILE", "1"))
    log_file_path: str = field(default_factory=lambda: os.getenv("MINDIE_LOG_PATH", ""))
    log_to_stdout: str = field(default_factory=lambda: os.getenv("MINDIE_LOG_TO_STDOUT", "0"))
    atb_llm_log_maxsize: int | None = field(
        default_factory=lambda: int(os.environ["PYTHON_LOG_MAXSIZE"]) if os.getenv("PYTHON_LOG_MAXSIZE") else None)
    log_file_rotate: str = os.getenv("MINDIE_LOG_ROTATE", "")
    log_verbose: str = field(default_factory=lambda: os.getenv("MINDIE_LOG_VERBOSE", "1"))
    use_mb_swapper: bool = field(default_factory=lambda: os.getenv("MINDIE_LLM_USE_MB_SWAPPER", "0") == "1")
    speed_mode_type: int = field(default_factory=lambda: _env_int("POST_PROCESSING_SPEED_MODE_TYPE", 0))
    rank: int = field(default_factory=lambda: _env_int("RANK", 0))
    local_rank: int = field(default_factory=lambda: _env_int("LOCAL_RANK", 0))
    world_size: int = field(default_factory=lambda: _env_int("WORLD_SIZE", 1))
    enable_dp_move_up: bool = os.getenv("DP_MOVE_UP_ENABLE", "0") == "1"
    enable_dp_partition_up: bool = os.getenv("DP_PARTITION_UP_ENABLE", "0") == "1"
    performance_prefix_tree: bool = field(default_factory=lambda: os.getenv("PERFORMANCE_PREFIX_TREE_ENABLE", "0") == "1")
    async_inference: bool = field(default_factory=lambda: os.getenv("MINDIE_ASYNC_SCHEDULING_ENABLE", "0") == "1")
    model_runner_exp: bool = False

    def __post_init__(self) -> None:
        if not 0 < self.memory_fraction <= 1.0:
            raise ValueError("NPU_MEMORY_FRACTION should be in the range of 0 to 1.0, 0.0 is not inclusive.")
        if not 0 <= self.rank < self.world_size:
            raise ValueError("RANK should be in the range of 0 to WORLD_SIZE, WORLD_SIZE is not inclusive.")


ENV = EnvVar()
