"""``BaichuanM1ForCausalLM`` for MindIE: our network behind MindIE's ``BaseModelForCausalLM``.

The network is ``m1_ascend.modeling.BaichuanM1Model`` itself (parameter names equal the checkpoint's);
only the ``ForwardContext`` differs: ``MindIEPagedContext`` reads MindIE's batch metadata and the
KV caches MindIE binds to one ``Attention`` holder per cache layer (MindIE's own class, registered
so its runner binds caches and builds metadata as for any model; its forward is never called).

Weights: MindIE's ``DefaultModelLoader`` copies checkpoint tensors into the parameters of leaf
modules through ``param.weight_loader``. Baichuan-M1's conv taps sit on the attention module,
which is not a leaf, so the adapter loads those itself; the first forward fails loudly if
MindIE's loader skipped any other tensor.

MindIE captures decode steps into ACL graphs (its torch runtime has no eager switch) and at replay
refreshes only the attention ops' ``actual_seq_lengths_kv``: the decode path (``MindIEStep.decode``)
reads nothing from the device on the host and gives every layer the same full lengths, so the
replayed graph computes what an eager step would. Prefill runs eagerly.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from mindie_llm.runtime.layers.attention.attention_layer import Attention
from mindie_llm.runtime.model_runner.forward_context_exp import get_forward_context
from mindie_llm.runtime.models.base.model import BaseModelForCausalLM
from safetensors import safe_open

from ..checkpoint import load_config, validate_checkpoint
from ..kernels import KernelBackend, ReferenceBackend, npu_available
from ..modeling import BaichuanM1Model, NormHead
from .context import MindIEPagedContext, MindIEStep
from .geometry import CacheGeometry

if TYPE_CHECKING:
    from mindie_llm.runtime.config.mindie_llm_config import MindIELLMConfig


class BaichuanM1ForCausalLM(BaseModelForCausalLM):
    def __init__(self, mindie_llm_config: MindIELLMConfig) -> None:
        super().__init__(mindie_llm_config)
        # MindIE's weight loader reads model.config (default_model_loader.py); its base class does not set it.
        self.config = mindie_llm_config.hf_config
        if mindie_llm_config.quant_config is not None:
            raise ValueError("the Baichuan-M1 adapter serves floating-point weights only; remove the quantization config")
        if torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1:
            raise ValueError("the Baichuan-M1 adapter runs one NPU per model instance; set worldSize to 1")
        checkpoint_dir = mindie_llm_config.model_name_or_path
        config = load_config(checkpoint_dir)
        files = validate_checkpoint(checkpoint_dir, config)
        self.geometry = CacheGeometry.from_config(config)
        self.model = BaichuanM1Model(config)
        self.lm_head = NormHead(config.hidden_size, config.vocab_size)
        scale = self.geometry.head_dim ** -0.5
        prefixes = [f"model.layers.{i}.self_attn.attn" for i in range(config.num_hidden_layers)] + ["model.conv_state"]
        # A tuple, not a ModuleList: the holders are MindIE's bookkeeping, not part of the checkpoint.
        self.cache_holders = tuple(
            Attention(num_heads=self.geometry.kv_heads, head_size=self.geometry.head_dim, scale=scale,
                      num_kv_heads=self.geometry.kv_heads, prefix=prefix)
            for prefix in prefixes)
        self.kernel_backend = default_backend(self.lm_head.weight.device)
        self._awaiting_mindie: set[str] = set()
        self._load_params_mindie_skips(files)

    def set_kernel_backend(self, backend: KernelBackend) -> None:
        self.kernel_backend = backend

    def _load_params_mindie_skips(self, files: dict[str, Path]) -> None:
        """Load parameters of non-leaf modules ourselves; leave the rest to MindIE's loader."""
        params = dict(self.named_parameters())
        ours = {f"{prefix}.{name}" if prefix else name
                for prefix, module in self.named_modules() if next(module.children(), None) is not None
                for name, _ in module.named_parameters(recurse=False)}
        for name, param in params.items():
            param.weight_loader = functools.partial(self._copy_weight, name)
            if name not in ours:
                self._awaiting_mindie.add(name)
        by_shard: dict[Path, list[str]] = {}
        for name in sorted(ours):
            by_shard.setdefault(files[name], []).append(name)
        for shard, names in by_shard.items():
            with safe_open(str(shard), framework="pt") as f:
                for name in names:
                    self._copy_weight(name, params[name], f.get_tensor(name))

    @torch.no_grad()
    def _copy_weight(self, name: str, param: torch.nn.Parameter, loaded_weight: torch.Tensor) -> None:
        if tuple(loaded_weight.shape) != tuple(param.shape):
            raise ValueError(f"{name}: checkpoint shape {list(loaded_weight.shape)} != model shape {list(param.shape)}")
        param.copy_(loaded_weight)
        self._awaiting_mindie.discard(name)

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor,
                intermediate_tensors: torch.Tensor | None = None,
                inputs_embeds: torch.Tensor | None = None) -> torch.Tensor:
        if intermediate_tensors is not None or inputs_embeds is not None:
            raise NotImplementedError("the Baichuan-M1 adapter takes token ids only (no pipeline stages or embeddings)")
        if self._awaiting_mindie:
            raise RuntimeError(f"MindIE's weight loader left {len(self._awaiting_mindie)} tensors unloaded, "
                               f"e.g. {min(self._awaiting_mindie)}")
        forward_context = get_forward_context()
        metadata = forward_context.attn_metadata
        key_caches = [holder.key_cache for holder in self.cache_holders]
        value_caches = [holder.value_cache for holder in self.cache_holders]
        if any(cache is None for cache in key_caches + value_caches):
            raise RuntimeError(f"MindIE bound no KV cache to some of the {len(self.cache_holders)} cache layers; "
                               f"it must allocate num_hidden_layers={self.geometry.num_cache_layers} layers")
        block_size = self.geometry.check_cache(key_caches[0])
        for cache in key_caches[1:] + value_caches:
            self.geometry.check_cache(cache)
        plan = MindIEStep.prefill if forward_context.is_prefill else MindIEStep.decode
        step = plan(positions, metadata, block_size)
        ctx = MindIEPagedContext(self.kernel_backend, step, self.geometry, key_caches, value_caches)
        return self.model(input_ids, ctx)

    def compute_logits(self, hidden_states: torch.Tensor) -> torch.Tensor:
        indices = get_forward_context().lm_head_indices
        if indices is not None:
            hidden_states = hidden_states.index_select(0, indices.to(hidden_states.device, torch.long))
        return self.lm_head(hidden_states)


def default_backend(device: torch.device) -> KernelBackend:
    """The NPU backend where torch_npu sees an NPU (every MindIE host), else the CPU reference."""
    if not npu_available():
        return ReferenceBackend()
    from ..kernels.npu import NpuBackend

    return NpuBackend(device=device)
