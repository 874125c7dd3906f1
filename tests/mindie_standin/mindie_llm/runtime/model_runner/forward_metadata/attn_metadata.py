"""Stand-in for ``mindie_llm.runtime.model_runner.forward_metadata.attn_metadata``.

MindIE-LLM 8b4871a, forward_metadata/attn_metadata.py:20-59.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from mindie_llm.runtime.layers.attention import get_global_attn_dict
from mindie_llm.runtime.model_runner.forward_metadata.module_metadata import ModuleMetadata


@dataclass
class AttentionMetadata(ModuleMetadata):
    slot_mapping: torch.Tensor
    seq_lens: torch.Tensor
    block_tables: torch.Tensor
    attn_mask: torch.Tensor
    seq_lens_list: list[int] | None = None
    max_seq_len: int = 0
    num_tokens: int = 0


def build_layerwise_attn_metadata(attn_metadata: AttentionMetadata) -> dict[str, AttentionMetadata]:
    """Every registered Attention prefix maps to the same metadata object."""
    return dict.fromkeys(get_global_attn_dict(), attn_metadata)
