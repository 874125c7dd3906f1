"""``ToyLlmForCausalLM``: token + position embeddings, attention layers, a linear head; bf16.

Each layer projects q/k/v, writes k/v to the caches MindIE bound to its ``Attention`` holder, and
attends: prefill over the prompt's own tokens (eager, dense causal); decode over the paged cache --
while MindIE captures, through ``torch_npu.npu_fused_infer_attention_score`` with the metadata's
host ``seq_lens_list`` (the op and keyword ``graph.update`` refreshes), and eagerly by gathering
the cache through the block table (the emulated FIA refuses MindIE's warm-up batches: see
``tests/mindie_standin/service.py``). Cache writes skip negative slots without data-dependent
shapes, so they are capturable.
"""

from __future__ import annotations

from typing import Any

import torch
import torch_npu
from mindie_llm.runtime.layers.attention.attention_layer import Attention
from mindie_llm.runtime.model_runner.forward_context_exp import get_forward_context
from mindie_llm.runtime.models.base.model import BaseModelForCausalLM
from torch import nn


def _copy_weight(param: nn.Parameter, loaded_weight: torch.Tensor) -> None:
    """What MindIE's loader calls per parameter (``param.weight_loader``)."""
    if param.shape != loaded_weight.shape:
        raise ValueError(f"checkpoint shape {tuple(loaded_weight.shape)} != parameter shape {tuple(param.shape)}")
    with torch.no_grad():
        param.copy_(loaded_weight)


def _write(cache: torch.Tensor, values: torch.Tensor, slots: torch.Tensor) -> None:
    """``cache[slot] = value`` per token; slots < 0 go to a scratch row that is dropped."""
    flat = cache.view(-1, *cache.shape[2:])
    extended = torch.cat([flat, flat.new_zeros(1, *flat.shape[1:])])
    index = torch.where(slots >= 0, slots.long(), flat.shape[0])
    extended.index_copy_(0, index, values.to(cache.dtype))
    flat.copy_(extended[:-1])


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, visible: torch.Tensor, scale: float) -> torch.Tensor:
    """fp32 attention of ``q [B, Q, H, D]`` over ``k/v [B, S, KV, D]``; rows that see nothing give 0."""
    groups = q.shape[2] // k.shape[2]
    k = k.float().repeat_interleave(groups, dim=2)
    v = v.float().repeat_interleave(groups, dim=2)
    scores = torch.einsum("bqhd,bshd->bhqs", q.float(), k) * scale
    scores = scores.masked_fill(~visible[:, None], float("-inf"))
    sees_any = visible.any(dim=-1)[:, None, :, None]
    probs = torch.where(sees_any, torch.softmax(torch.where(sees_any, scores, 0.0), dim=-1), 0.0)
    return torch.einsum("bhqs,bshd->bqhd", probs, v)


class ToyLayer(nn.Module):
    def __init__(self, config: Any, prefix: str) -> None:
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = config.num_attention_heads, config.num_key_value_heads, config.head_dim
        self.scale = self.head_dim ** -0.5
        self.q_proj = nn.Linear(config.hidden_size, self.heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(config.hidden_size, self.kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(config.hidden_size, self.kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.heads * self.head_dim, config.hidden_size, bias=False)
        self.attn = Attention(self.heads, self.head_dim, self.scale, num_kv_heads=self.kv_heads, prefix=f"{prefix}.attn")
        self.inert_pad_rows = getattr(config, "inert_pad_rows", True)
        self.read_past_end = getattr(config, "read_past_end", False)

    def forward(self, hidden: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        context = get_forward_context()
        metadata = context.attn_metadata
        tokens = hidden.shape[0]
        q = self.q_proj(hidden).view(tokens, self.heads, self.head_dim)
        k = self.k_proj(hidden).view(tokens, self.kv_heads, self.head_dim)
        v = self.v_proj(hidden).view(tokens, self.kv_heads, self.head_dim)
        slots = metadata.slot_mapping
        if not context.is_prefill and self.inert_pad_rows:
            slots = torch.where(metadata.seq_lens > 0, slots, -1)
        _write(self.attn.key_cache, k, slots)
        _write(self.attn.value_cache, v, slots)
        if context.is_prefill:
            out = self._prefill(q, k, v, metadata.seq_lens, positions)
        elif context.capturing:
            out = self._decode_fia(q, metadata)
        else:
            out = self._decode_gather(q, metadata)
        return self.o_proj(out.reshape(tokens, -1).to(hidden.dtype))

    def _prefill(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, seq_lens: torch.Tensor,
                 positions: torch.Tensor) -> torch.Tensor:
        """Causal attention within each prompt (the token's sequence id from the prompt lengths)."""
        sequence = torch.repeat_interleave(torch.arange(len(seq_lens)), seq_lens.long().cpu())
        visible = (sequence[:, None] == sequence[None, :]) & (positions[None, :] <= positions[:, None])
        return _attend(q[None], k[None], v[None], visible[None], self.scale)[0]

    def _decode_fia(self, q: torch.Tensor, metadata: Any) -> torch.Tensor:
        """MindIE's full-graph decode call (fia_attention.py:232-277): BSH, paged, host KV lengths."""
        batch = q.shape[0]
        cache_shape = (-1, self.attn.key_cache.shape[1], self.kv_heads * self.head_dim)
        out, _ = torch_npu.npu_fused_infer_attention_score(
            q.reshape(batch, 1, -1), self.attn.key_cache.view(cache_shape), self.attn.value_cache.view(cache_shape),
            block_table=metadata.block_tables[:batch], block_size=self.attn.key_cache.shape[1], num_heads=self.heads,
            num_key_value_heads=self.kv_heads, input_layout="BSH", scale=self.scale,
            actual_seq_lengths_kv=metadata.seq_lens_list)
        return out

    def _decode_gather(self, q: torch.Tensor, metadata: Any) -> torch.Tensor:
        """Eager decode: each row's blocks gathered through its table row, ``seq_lens`` positions visible."""
        batch = q.shape[0]
        table = metadata.block_tables[:batch].long().clamp(min=0)
        keys = self.attn.key_cache[table].flatten(1, 2)
        values = self.attn.value_cache[table].flatten(1, 2)
        lengths = metadata.seq_lens[:batch].long() + int(self.read_past_end)
        visible = torch.arange(keys.shape[1]) < lengths[:, None]
        keys = torch.where(visible[:, :, None, None], keys, 0)
        values = torch.where(visible[:, :, None, None], values, 0)
        return _attend(q[:, None], keys, values, visible[:, None], self.scale)


class ToyLlmForCausalLM(BaseModelForCausalLM):
    def __init__(self, mindie_llm_config: Any) -> None:
        super().__init__(mindie_llm_config)
        config = mindie_llm_config.hf_config
        if getattr(config, "set_config", True):
            self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.embed_positions = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.layers = nn.ModuleList(ToyLayer(config, f"layers.{i}") for i in range(config.num_hidden_layers))
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        for param in self.parameters():
            param.weight_loader = _copy_weight

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor, intermediate_tensors: torch.Tensor | None = None,
                inputs_embeds: torch.Tensor | None = None) -> torch.Tensor:
        hidden = self.embed_tokens(input_ids) + self.embed_positions(positions)
        for layer in self.layers:
            hidden = hidden + layer(hidden, positions)
        return hidden

    def compute_logits(self, hidden_states: torch.Tensor) -> torch.Tensor:
        indices = get_forward_context().lm_head_indices
        return self.lm_head(hidden_states.index_select(0, indices)).float()
