"""Stand-in for ``mindie_llm.runtime.model_runner.forward_context_exp``, which ModelRunnerExp sets."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .forward_metadata.attn_metadata import AttentionMetadata


@dataclass
class ForwardContext:
    is_prefill: bool | None = None
    lm_head_indices: torch.Tensor | None = None
    attn_metadata: AttentionMetadata | None = None
    attn_metadata_dict: dict[str, AttentionMetadata] | None = None
    capturing: bool = False
    num_actual_tokens: int = 0


_forward_context: ForwardContext | None = None


def get_forward_context() -> ForwardContext:
    if _forward_context is None:
        raise RuntimeError("Forward context is not set. Please use `set_forward_context` to set the forward context.")
    return _forward_context


def set_forward_context(context: ForwardContext) -> None:
    global _forward_context
    _forward_context = context
