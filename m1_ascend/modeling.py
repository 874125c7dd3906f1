"""Baichuan-M1 in plain PyTorch: the whole architecture in one file (architecture.md §2).

The network runs on a flat batch of tokens ``[N, hidden]``. Everything that depends on how the
tokens are batched and cached (padding, a transformers-style cache, or the engine's paged
cache) lives behind a ``ForwardContext``, so one model definition serves training, Hugging
Face ``generate`` and the serving engine. The operators special to M1 come from a kernel
backend (``m1_ascend.kernels``), so the Ascend backend swaps in without touching this file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from .config import BaichuanM1Config
from .kernels import KernelBackend, ReferenceBackend


class ForwardContext(Protocol):
    """How the current tokens are batched and where their K/V history lives."""

    backend: KernelBackend
    positions: torch.Tensor  # int64 [N], absolute position of each token in its sequence

    def conv_kv(self, layer_idx: int, k: torch.Tensor, v: torch.Tensor,
                conv_k: torch.Tensor, conv_v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...

    def attention(self, layer_idx: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                  window: int | None, scale: float) -> torch.Tensor: ...


class RMSNorm(nn.Module):
    def __init__(self, hidden_size: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.eps = eps

    def forward(self, x: torch.Tensor, backend: KernelBackend) -> torch.Tensor:
        return backend.rms_norm(x, self.weight, self.eps)


class RotaryTable(nn.Module):
    """cos/sin for rotate-half RoPE, computed in fp32 from absolute positions."""

    def __init__(self, head_dim: int, theta: float) -> None:
        super().__init__()
        self.head_dim, self.theta = head_dim, theta
        self.register_buffer("inv_freq", torch.empty(head_dim // 2), persistent=False)
        self.reset()

    def reset(self) -> None:
        """(Re)compute the frequencies: the buffer is not in checkpoints, so loaders call this."""
        exponents = torch.arange(0, self.head_dim, 2, dtype=torch.float32, device=self.inv_freq.device)
        self.inv_freq = 1.0 / self.theta ** (exponents / self.head_dim)

    def _apply(self, fn, recurse=True):  # noqa: ANN001, ANN202 (nn.Module's signature)
        """``model.to(torch.bfloat16)`` would round the frequencies: recompute them in fp32 where they now live."""
        super()._apply(fn, recurse)
        self.reset()
        return self

    def forward(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        angles = positions.float()[:, None] * self.inv_freq.float()[None, :]
        angles = torch.cat((angles, angles), dim=-1)
        return angles.cos(), angles.sin()


class Attention(nn.Module):
    """Packed QKV, short conv on K/V before RoPE, global or sliding-window GQA attention."""

    def __init__(self, config: BaichuanM1Config, layer_idx: int) -> None:
        super().__init__()
        self.layer_idx = layer_idx
        self.num_heads, self.num_kv_heads, self.head_dim = config.layer_heads(layer_idx)
        self.window = config.sliding_window if config.is_sliding(layer_idx) else None
        self.scale = 1.0 / math.sqrt(self.head_dim)
        kv_width = self.num_kv_heads * self.head_dim
        self.split_sizes = [config.hidden_size, kv_width, kv_width]
        self.W_pack = nn.Linear(config.hidden_size, sum(self.split_sizes), bias=False)
        self.conv_k = nn.Parameter(torch.zeros(1, 1, self.num_kv_heads, 1, config.conv_window))
        self.conv_v = nn.Parameter(torch.zeros(1, 1, self.num_kv_heads, 1, config.conv_window))
        self.o_proj = nn.Linear(config.hidden_size, config.hidden_size, bias=False)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor],
                ctx: ForwardContext) -> torch.Tensor:
        n_tokens = x.shape[0]
        q, k, v = self.W_pack(x).split(self.split_sizes, dim=-1)
        q = q.view(n_tokens, self.num_heads, self.head_dim)
        k = k.view(n_tokens, self.num_kv_heads, self.head_dim)
        v = v.view(n_tokens, self.num_kv_heads, self.head_dim)
        k, v = ctx.conv_kv(self.layer_idx, k, v, self.conv_k.view(self.num_kv_heads, -1),
                           self.conv_v.view(self.num_kv_heads, -1))
        q, k = ctx.backend.rotary(q, k, *rope)
        out = ctx.attention(self.layer_idx, q, k, v, self.window, self.scale)
        return self.o_proj(out.reshape(n_tokens, -1))


class MLP(nn.Module):
    def __init__(self, config: BaichuanM1Config) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)

    def forward(self, x: torch.Tensor, backend: KernelBackend) -> torch.Tensor:
        return self.down_proj(backend.silu_and_mul(self.gate_proj(x), self.up_proj(x)))


class DecoderLayer(nn.Module):
    def __init__(self, config: BaichuanM1Config, layer_idx: int) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = Attention(config, layer_idx)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor],
                ctx: ForwardContext) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x, ctx.backend), rope, ctx)
        return x + self.mlp(self.post_attention_layernorm(x, ctx.backend), ctx.backend)


class NormHead(nn.Module):
    """lm_head whose rows are L2-normalised before the matmul (the checkpoint stores them raw).

    Outside training the normalised weight is computed once and reused until the weight changes.
    """

    def __init__(self, hidden_size: int, vocab_size: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(vocab_size, hidden_size))
        self._normalized: torch.Tensor | None = None
        self._normalized_key: tuple[Any, ...] | None = None

    def normalized_weight(self) -> torch.Tensor:
        if torch.is_grad_enabled() and self.weight.requires_grad:
            return F.normalize(self.weight, dim=-1)
        key = (self.weight.data_ptr(), self.weight._version, self.weight.dtype, self.weight.device)
        if self._normalized_key != key:
            self._normalized = F.normalize(self.weight.detach(), dim=-1)
            self._normalized_key = key
        assert self._normalized is not None
        return self._normalized

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return F.linear(hidden, self.normalized_weight())


class BaichuanM1Model(nn.Module):
    """Embedding, decoder stack and final norm over a flat batch of tokens."""

    def __init__(self, config: BaichuanM1Config) -> None:
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, config.pad_token_id)
        self.layers = nn.ModuleList(DecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        head_dims = {config.layer_heads(i)[2] for i in range(config.num_hidden_layers)}
        self.rotary = nn.ModuleDict({str(d): RotaryTable(d, config.rope_theta) for d in sorted(head_dims)})

    def forward(self, input_ids: torch.Tensor, ctx: ForwardContext) -> torch.Tensor:
        # The official forward maps id == vocab_size to 0; kept for bit-compatibility on odd inputs.
        input_ids = input_ids.masked_fill(input_ids == self.config.vocab_size, 0)
        x = self.embed_tokens(input_ids)
        ropes = {d: table(ctx.positions) for d, table in self.rotary.items()}
        for layer in self.layers:
            x = layer(x, ropes[str(layer.self_attn.head_dim)], ctx)
        return self.norm(x, ctx.backend)


@dataclass
class BaichuanM1Cache:
    """transformers-style cache for ``generate``: K/V, conv state and position history per batch row.

    Serving uses the engine's paged cache instead; this one exists so the model works with the
    tools people already use (``generate``, evaluation harnesses).
    """

    keys: dict[int, torch.Tensor] = field(default_factory=dict)
    values: dict[int, torch.Tensor] = field(default_factory=dict)
    conv_k: dict[int, torch.Tensor] = field(default_factory=dict)
    conv_v: dict[int, torch.Tensor] = field(default_factory=dict)
    positions: torch.Tensor | None = None  # [B, S]
    valid: torch.Tensor | None = None  # [B, S] bool

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return 0 if self.positions is None else int(self.positions.shape[1])

    def reorder_cache(self, beam_idx: torch.Tensor) -> None:
        for store in (self.keys, self.values, self.conv_k, self.conv_v):
            for i, t in store.items():
                store[i] = t.index_select(0, beam_idx.to(t.device))
        if self.positions is not None and self.valid is not None:
            self.positions = self.positions.index_select(0, beam_idx.to(self.positions.device))
            self.valid = self.valid.index_select(0, beam_idx.to(self.valid.device))


class DenseContext:
    """Padded ``[B, T]`` batches, with or without a ``BaichuanM1Cache``."""

    def __init__(self, backend: KernelBackend, q_positions: torch.Tensor, valid: torch.Tensor,
                 cache: BaichuanM1Cache | None) -> None:
        self.backend = backend
        self.batch, self.q_len = q_positions.shape
        self.positions = q_positions.reshape(-1)
        self.q_positions = q_positions
        self.valid = valid
        self.cache = cache
        if cache is None:
            self.k_positions, self.k_valid = q_positions, valid
        else:
            cache.positions = q_positions if cache.positions is None else torch.cat([cache.positions, q_positions], 1)
            cache.valid = valid if cache.valid is None else torch.cat([cache.valid, valid], 1)
            self.k_positions, self.k_valid = cache.positions, cache.valid
        device = q_positions.device
        self.cu_seqlens = torch.arange(self.batch + 1, device=device, dtype=torch.int32) * self.q_len
        self.slots = torch.arange(self.batch, device=device)

    def _state(self, store: dict[int, torch.Tensor] | None, layer_idx: int, like: torch.Tensor) -> torch.Tensor:
        shape = (self.batch, *like.shape[1:])
        if store is None:
            return like.new_zeros(shape)
        if layer_idx not in store:
            store[layer_idx] = like.new_zeros(shape)
        return store[layer_idx]

    def conv_kv(self, layer_idx: int, k: torch.Tensor, v: torch.Tensor,
                conv_k: torch.Tensor, conv_v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Padding tokens contribute a zero "previous token", like the start of a sequence.
        keep = self.valid.reshape(-1, 1, 1).to(k.dtype)
        k, v = k * keep, v * keep
        state_k = self._state(self.cache.conv_k if self.cache else None, layer_idx, k)
        state_v = self._state(self.cache.conv_v if self.cache else None, layer_idx, v)
        return self.backend.conv_kv(k, v, conv_k, conv_v, state_k, state_v, self.cu_seqlens, self.slots)

    def attention(self, layer_idx: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                  window: int | None, scale: float) -> torch.Tensor:
        q = q.view(self.batch, self.q_len, *q.shape[1:])
        k = k.view(self.batch, self.q_len, *k.shape[1:])
        v = v.view(self.batch, self.q_len, *v.shape[1:])
        if self.cache is not None:
            if layer_idx in self.cache.keys:
                k = torch.cat([self.cache.keys[layer_idx], k], dim=1)
                v = torch.cat([self.cache.values[layer_idx], v], dim=1)
            self.cache.keys[layer_idx], self.cache.values[layer_idx] = k, v
        out = self.backend.dense_attention(q, k, v, self.q_positions, self.k_positions, self.k_valid,
                                           window, scale)
        return out.reshape(self.batch * self.q_len, *out.shape[2:])


class BaichuanM1PreTrainedModel(PreTrainedModel):
    config_class = BaichuanM1Config
    base_model_prefix = "model"
    _no_split_modules = ["DecoderLayer"]
    supports_gradient_checkpointing = False

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, NormHead)):
            module.weight.normal_(0.0, std)
        elif isinstance(module, nn.Embedding):
            module.weight.normal_(0.0, std)
        elif isinstance(module, RMSNorm):
            module.weight.fill_(1.0)
        elif isinstance(module, RotaryTable):
            module.reset()
        elif isinstance(module, Attention):
            # The official constructor initialises the conv taps as a softmax over random numbers.
            for conv in (module.conv_k, module.conv_v):
                conv.copy_(torch.softmax(torch.randn_like(conv, dtype=torch.float32), dim=-1).to(conv.dtype))


class BaichuanM1ForCausalLM(BaichuanM1PreTrainedModel, GenerationMixin):
    """The official class name and parameter names, without flash-attn or remote code."""

    # forward averages the loss itself: trainers must divide by gradient-accumulation steps.
    accepts_loss_kwargs = False

    def __init__(self, config: BaichuanM1Config) -> None:
        super().__init__(config)
        self.model = BaichuanM1Model(config)
        self.lm_head = NormHead(config.hidden_size, config.vocab_size)
        self.kernel_backend: KernelBackend = ReferenceBackend()
        self.post_init()

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        # The cache also carries the conv state and position history: the model builds its own.
        return False

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.model.embed_tokens = value

    def set_kernel_backend(self, backend: KernelBackend) -> None:
        self.kernel_backend = backend

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.lm_head(hidden)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        past_key_values: BaichuanM1Cache | None = None,
        labels: torch.Tensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int = 0,
        **kwargs: Any,
    ) -> CausalLMOutputWithPast:
        batch, q_len = input_ids.shape
        use_cache = self.config.use_cache if use_cache is None else use_cache
        if past_key_values is None and use_cache and not self.training:
            past_key_values = BaichuanM1Cache()
        past_len = past_key_values.get_seq_length() if past_key_values is not None else 0
        if attention_mask is None:
            attention_mask = torch.ones(batch, past_len + q_len, dtype=torch.long, device=input_ids.device)
        valid = attention_mask[:, -q_len:].bool()
        if position_ids is None:
            position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, -q_len:]
        ctx = DenseContext(self.kernel_backend, position_ids.long(), valid, past_key_values)
        hidden = self.model(input_ids.reshape(-1), ctx).view(batch, q_len, -1)
        if logits_to_keep:
            hidden = hidden[:, -logits_to_keep:]
        logits = self.compute_logits(hidden)
        loss = None
        if labels is not None:
            shift_logits = logits[:, :-1].float().reshape(-1, logits.shape[-1])
            loss = F.cross_entropy(shift_logits, labels[:, 1:].reshape(-1).to(logits.device), ignore_index=-100)
        return CausalLMOutputWithPast(loss=loss, logits=logits,
                                      past_key_values=past_key_values if use_cache else None)
