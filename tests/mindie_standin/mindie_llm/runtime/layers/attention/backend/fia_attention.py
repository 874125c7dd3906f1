"""Stand-in for ``mindie_llm.runtime.layers.attention.backend.fia_attention`` (MindIE-LLM 8b4871a, backend/fia_attention.py).

``FiaAttentionMetadata`` is modelled exactly, because every model MindIE runs receives it:

- ``register_buffer`` (:70-75): static ``seq_lens`` int32 zeros ``[max_num_token]``, ``block_tables``
  int32 **zeros** ``[max_num_token, max_block_per_seq]``, ``slot_mapping`` int32 **-1** ``[max_num_token]``;
- ``to_device`` (:77-81, eager and before padding): tables/slots to int32 device tensors,
  ``seq_lens_list`` = the host array the TG built (a numpy int32 array), ``seq_lens`` a device tensor;
- ``copy`` (:83-103, padded decode): ``seq_lens[:a]`` copied and ``[a:n]`` zeroed, ``seq_lens_list``
  becomes a list padded with zeros to ``n``; the TG table is copied into ``block_tables[:a, :w]``,
  columns from ``ceil(max_seq_len / 128)`` on are zeroed in rows ``[:n]`` (128 is hard-coded, not
  the cache block size), rows ``[n:]`` are zeroed, and the model gets the **whole** buffer;
  ``slot_mapping[:a]`` is copied and the model gets ``[:n]``: rows ``[a:n]`` keep whatever an earlier
  step (or the -1 fill) left there.

``FiaAttentionBackendImpl`` keeps its constructor (head divisibility check, ``block_size = 128``,
:145-151). Its forward paths (``_npu_reshape_and_cache`` + FIA prefill/decode/full-graph, :153-310)
are reduced to NotImplementedError: the adapter brings its own attention and only uses ``Attention``
as a cache holder; ``torch_npu._npu_reshape_and_cache`` has no emulator counterpart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from mindie_llm.runtime.model_runner.forward_context_exp import AttentionMetadata, ForwardContext
from mindie_llm.runtime.model_runner.input_buffer import input_buffer

from .abstract import AttentionBackend, AttentionImpl, AttentionLayer

_HARD_CODED_BLOCK = 128  # fia_attention.py:93 and :150
_NOT_MODELLED = "not modelled: FiaAttentionBackendImpl's own attention (the adapter uses Attention only to hold caches)"


class FiaAttentionBackend(AttentionBackend):
    @staticmethod
    def get_name() -> str:
        return "ATTENTION_V1"

    @staticmethod
    def get_impl_cls() -> type[FiaAttentionBackendImpl]:
        return FiaAttentionBackendImpl

    @staticmethod
    def get_builder_cls() -> type[FiaAttentionMetadataBuilder]:
        return FiaAttentionMetadataBuilder


@dataclass
class FiaAttentionMetadata(AttentionMetadata):
    @staticmethod
    def from_model_input(model_inputs: Any, mask: torch.Tensor, num_speculative_tokens: int = 0) -> FiaAttentionMetadata:
        return FiaAttentionMetadata(seq_lens=model_inputs.context_length, slot_mapping=model_inputs.slots,
                                    block_tables=model_inputs.block_tables, attn_mask=mask,
                                    max_seq_len=model_inputs.max_seq_len)

    @staticmethod
    def register_buffer(max_num_token: int, device: torch.device, max_block_per_seq: int) -> None:
        input_buffer.register("seq_lens", torch.zeros(max_num_token, dtype=torch.int32, device=device))
        input_buffer.register("block_tables",
                              torch.zeros((max_num_token, max_block_per_seq), dtype=torch.int32, device=device))
        input_buffer.register("slot_mapping", torch.full((max_num_token,), -1, dtype=torch.int32, device=device))

    def to_device(self, device: torch.device) -> None:
        self.block_tables = torch.tensor(self.block_tables, dtype=torch.int32).to(device)
        self.slot_mapping = torch.tensor(self.slot_mapping, dtype=torch.int32).to(device)
        self.seq_lens_list = self.seq_lens
        self.seq_lens = torch.tensor(self.seq_lens).to(device)

    def copy(self, num_actual_tokens: int, num_tokens: int) -> None:
        seq_lens = input_buffer.get("seq_lens")
        seq_lens[:num_actual_tokens].copy_(self.seq_lens[:num_actual_tokens])
        seq_lens[num_actual_tokens:num_tokens].fill_(0)
        self.seq_lens = seq_lens[:num_tokens]
        self.seq_lens_list = self.seq_lens_list.tolist() + [0] * (num_tokens - num_actual_tokens)

        used_columns = -(-self.max_seq_len // _HARD_CODED_BLOCK)
        block_tables = input_buffer.get("block_tables")
        block_tables[:num_actual_tokens, : self.block_tables.shape[-1]].copy_(self.block_tables)
        block_tables[:num_tokens, used_columns:].fill_(0)
        block_tables[num_tokens:, :].fill_(0)
        self.block_tables = block_tables

        slot_mapping = input_buffer.get("slot_mapping")
        slot_mapping[:num_actual_tokens].copy_(self.slot_mapping[:num_actual_tokens])
        self.slot_mapping = slot_mapping[:num_tokens]


class FiaAttentionMetadataBuilder:
    @staticmethod
    def build(common_attn_metadata: AttentionMetadata, input_metadata: dict) -> FiaAttentionMetadata:
        return FiaAttentionMetadata(seq_lens=common_attn_metadata.seq_lens, seq_lens_list=common_attn_metadata.seq_lens_list,
                                    slot_mapping=common_attn_metadata.slot_mapping,
                                    block_tables=common_attn_metadata.block_tables,
                                    attn_mask=common_attn_metadata.attn_mask)

    @staticmethod
    def get_metadata_cls() -> type[FiaAttentionMetadata]:
        return FiaAttentionMetadata


class FiaAttentionBackendImpl(AttentionImpl):
    def __init__(self, num_heads: int, head_size: int, scale: float, num_kv_heads: int, quant_method: Any,
                 **kwargs: Any) -> None:
        self.num_heads = num_heads
        self.head_size = head_size
        self.scale = float(scale)
        self.num_kv_heads = num_heads if num_kv_heads is None else num_kv_heads
        self.hidden_size = self.num_heads * self.head_size
        self.q_size = num_heads * head_size
        if self.num_heads % self.num_kv_heads != 0:
            raise ValueError("In MHA/GQA/MQA, num_kv_heads should be divisible by num_heads.")
        self.num_queries_per_kv = self.num_heads // self.num_kv_heads
        self.key_cache = None
        self.value_cache = None
        self.block_size = _HARD_CODED_BLOCK
        self.quant_method = quant_method

    def reshape_and_cache(self, key: torch.Tensor, value: torch.Tensor, kv_cache: tuple, attn_metadata: Any) -> Any:
        raise NotImplementedError(_NOT_MODELLED)

    def apply_prefill_attention(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                                attn_metadata: Any) -> torch.Tensor:
        raise NotImplementedError(_NOT_MODELLED)

    def apply_decode_attention(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                               attn_metadata: Any) -> torch.Tensor:
        raise NotImplementedError(_NOT_MODELLED)

    def apply_fullgraph_attention(self, query: torch.Tensor, attn_metadata: Any) -> torch.Tensor:
        raise NotImplementedError(_NOT_MODELLED)

    def forward_impl(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, forward_context: ForwardContext,
                     attn_metadata: Any) -> torch.Tensor:
        raise NotImplementedError(_NOT_MODELLED)

    def forward(self, layer: AttentionLayer, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                kv_cache: tuple | None = None) -> torch.Tensor:
        raise NotImplementedError(_NOT_MODELLED)
