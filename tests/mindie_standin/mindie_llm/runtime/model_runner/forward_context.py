"""Stand-in for ``mindie_llm.runtime.model_runner.forward_context`` as on master (MindIE-LLM 8b4871a, forward_context.py).

The older forward context, not used by ``ModelRunnerExp``. On master it defines no
``get_forward_context``/``set_forward_context`` (removed 2026-01-24, the re-export dropped
2026-04-16), so ``from ...forward_context import get_forward_context`` raises ImportError there.
Branch ``dev`` (be30784) adds lazy proxies to ``forward_context_exp``; ``fixtures.make_mindie_tree(...,
forward_context="dev")`` appends them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from mindie_llm.runtime.model_runner.forward_context_exp import BatchDescriptor
from mindie_llm.runtime.model_runner.forward_metadata.attn_metadata import AttentionMetadata
from mindie_llm.runtime.model_runner.forward_metadata.module_metadata import ModuleMetadata
from mindie_llm.runtime.utils.distributed import get_parallel_info_manager
from mindie_llm.runtime.utils.distributed.parallel_info_manager import ParallelType


@dataclass
class MtpMetadata(ModuleMetadata):
    last_hidden_states: torch.Tensor = None


@dataclass
class ForwardContext:
    attn_metadata: AttentionMetadata
    lm_head_indices: torch.Tensor
    mtp_metadata: MtpMetadata
    is_prefill: bool
    num_tokens_across_dp_cpu: torch.Tensor
    capturing: bool = False
    num_tokens: int = 0
    num_actual_tokens: int = 0
    seq_lens: torch.Tensor = None
    batch_descriptor: BatchDescriptor = None
    attn_metadata_dict: dict[str, AttentionMetadata] = None
    mc2_mask: torch.Tensor = None


_forward_context: ForwardContext | None = None


def create_forward_context(input_metadata: dict[str, Any], capturing: bool = False) -> ForwardContext:
    """From the older runner's metadata dict (forward_context.py:46-70)."""
    num_tokens = input_metadata.get("num_tokens", 0)
    return ForwardContext(
        attn_metadata=AttentionMetadata.from_dict(input_metadata), lm_head_indices=input_metadata.get("lm_head_indices"),
        mtp_metadata=MtpMetadata.from_dict(input_metadata), is_prefill=input_metadata["is_prefill"], num_tokens=num_tokens,
        num_actual_tokens=input_metadata.get("num_actual_tokens", 0), capturing=capturing,
        seq_lens=input_metadata["seq_lens"], num_tokens_across_dp_cpu=input_metadata["num_tokens_across_dp_cpu"],
        batch_descriptor=BatchDescriptor(num_tokens, get_parallel_info_manager().get(ParallelType.ATTN_DP).is_enabled()),
        mc2_mask=input_metadata.get("mc2_mask"))
