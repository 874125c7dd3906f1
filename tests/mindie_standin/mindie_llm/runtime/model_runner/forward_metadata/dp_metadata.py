"""Stand-in for ``mindie_llm.runtime.model_runner.forward_metadata.dp_metadata`` (MindIE-LLM 8b4871a, dp_metadata.py:22-106).

Present in every forward context. Without data parallelism (one NPU) it holds the token count as a
one-element CPU tensor; the all-reduce across DP ranks is not modelled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from mindie_llm.runtime.model_runner.forward_metadata.module_metadata import ModuleMetadata
from mindie_llm.runtime.utils.distributed import get_parallel_info_manager
from mindie_llm.runtime.utils.distributed.parallel_info_manager import ParallelType


@dataclass
class DPMetadata(ModuleMetadata):
    num_tokens_across_dp_cpu: torch.Tensor
    num_actual_tokens_across_dp_cpu: torch.Tensor
    max_tokens_across_dp_cpu: int

    def __post_init__(self) -> None:
        """Per DP rank token counts, this rank's in its slot (then all-reduced when DP is on)."""
        dp = get_parallel_info_manager().get(ParallelType.ATTN_DP)
        if dp.is_enabled():
            raise NotImplementedError("not modelled: data parallelism (the all-reduce of token counts)")
        counts = torch.tensor([self.num_tokens_across_dp_cpu if i == dp.rank else 0 for i in range(dp.group_size)],
                              dtype=torch.int32, device="cpu")
        self.num_tokens_across_dp_cpu = counts
        self.max_tokens_across_dp_cpu = int(counts.max())
        self.num_actual_tokens_across_dp_cpu = counts

    @staticmethod
    def from_model_input(model_input: Any) -> DPMetadata:
        count = model_input.input_ids.shape[0]
        return DPMetadata(num_tokens_across_dp_cpu=count, num_actual_tokens_across_dp_cpu=count, max_tokens_across_dp_cpu=0)

    @staticmethod
    def is_enabled() -> bool:
        return get_parallel_info_manager().get(ParallelType.ATTN_DP).is_enabled()

    @staticmethod
    def register_buffer(max_num_token: int, device: torch.device) -> None:
        """DP keeps no static buffers."""

    def to_device(self, device: torch.device) -> None:
        """The counts stay on the host."""

    def copy(self, num_actual_tokens: int, num_tokens: int) -> None:
        self.num_tokens_across_dp_cpu = torch.tensor(
            [num_tokens] * get_parallel_info_manager().get(ParallelType.ATTN_DP).group_size)
