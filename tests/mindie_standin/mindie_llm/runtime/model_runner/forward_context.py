"""Stand-in for the older ``mindie_llm.runtime.model_runner.forward_context`` (ModelRunner, not -Exp)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class AttentionMetadata:
    slot_mapping: torch.Tensor
    seq_lens: torch.Tensor
    block_tables: torch.Tensor
    attn_mask: torch.Tensor | None
    cos_table: torch.Tensor | None
    sin_table: torch.Tensor | None
    seq_lens_list: list | None = None


@dataclass
class LMHeadMetadata:
    lm_head_indices: torch.Tensor


@dataclass
class ForwardContext:
    attn_metadata: dict[str, AttentionMetadata | torch.Tensor]
    lmhead_metadata: LMHeadMetadata
    mtp_metadata: object
    is_prefill: bool
    num_tokens_across_dp_cpu: torch.Tensor
    capturing: bool = False
    num_tokens: int = 0
    num_actual_tokens: int = 0
    seq_lens: torch.Tensor = None


_forward_context: ForwardContext | None = None


def get_forward_context() -> ForwardContext:
    if _forward_context is None:
        raise RuntimeError("Forward context is not set. Please use `set_forward_context` to set the forward context.")
    return _forward_context


def set_forward_context(context: ForwardContext) -> None:
    global _forward_context
    _forward_context = context
