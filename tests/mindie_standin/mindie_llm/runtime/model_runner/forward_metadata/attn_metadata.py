"""Stand-in for ``mindie_llm.runtime.model_runner.forward_metadata.attn_metadata``."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class AttentionMetadata:
    slot_mapping: torch.Tensor
    seq_lens: torch.Tensor
    block_tables: torch.Tensor
    attn_mask: torch.Tensor | None
    seq_lens_list: list[int] | None = None
    max_seq_len: int = 0
    num_tokens: int = 0
