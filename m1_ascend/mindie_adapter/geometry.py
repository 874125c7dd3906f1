"""How Baichuan-M1's two attention geometries live in MindIE's uniform per-layer KV cache.

MindIE allocates, for every cache layer, K and V tensors ``[num_blocks, block_size, kv_heads,
head_dim]`` with a single ``(kv_heads, head_dim)`` read from the model config, and one block table
per sequence shared by all layers. Baichuan-M1 has two per-token widths (14B: global layers
2 x 256 = 512, sliding-window layers 8 x 128 = 1024), so:

- MindIE is told the widest layer's geometry. A narrower layer whose width divides it views each
  physical block as ``ratio`` contiguous sub-blocks and uses the first one (block ``b`` becomes
  sub-block ``b * ratio``): its cache stays a contiguous ``[blocks, block_size, width]`` tensor,
  which is what the kernels take, and every token of block ``b`` stays inside block ``b``'s memory.
- One extra cache layer holds the conv state. Baichuan-M1 convolves K and V with the previous
  token's raw (pre-conv) K and V, and MindIE's torch runtime has no per-sequence state cache, so
  for every physical block that layer keeps the raw K (in its K cache) and raw V (in its V cache) of
  the last token written into the block, for every decoder layer. Because the state lives inside
  the blocks, whatever MindIE does to whole blocks (prefix sharing, swapping to host memory,
  moving KV between nodes) carries it along.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config import BaichuanM1Config, ConfigError


@dataclass(frozen=True)
class LayerPlacement:
    """Where one decoder layer's K/V and conv state sit in MindIE's cache tensors."""

    n_kv: int
    head_dim: int
    ratio: int  # sub-blocks per physical block; the layer uses the first
    state_offset: int  # start of this layer's raw K (or V) inside one state-layer block

    @property
    def width(self) -> int:
        return self.n_kv * self.head_dim


@dataclass(frozen=True)
class CacheGeometry:
    """The cache shape MindIE is asked to allocate, and each layer's place in it."""

    kv_heads: int
    head_dim: int
    layers: tuple[LayerPlacement, ...]

    @classmethod
    def from_config(cls, config: BaichuanM1Config) -> CacheGeometry:
        heads = [config.layer_heads(i)[1:] for i in range(config.num_hidden_layers)]
        kv_heads, head_dim = max(heads, key=lambda g: g[0] * g[1])
        width = kv_heads * head_dim
        layers, offset = [], 0
        for i, (n_kv, d) in enumerate(heads):
            if width % (n_kv * d):
                raise ConfigError(
                    f"layer {i}: K/V width {n_kv * d} does not divide the widest layer's {width}; "
                    "MindIE's uniform per-layer cache cannot hold both geometries")
            layers.append(LayerPlacement(n_kv, d, width // (n_kv * d), offset))
            offset += n_kv * d
        return cls(kv_heads, head_dim, tuple(layers))

    @property
    def width(self) -> int:
        return self.kv_heads * self.head_dim

    @property
    def num_cache_layers(self) -> int:
        """Decoder layers plus the conv-state layer: the layer count MindIE must allocate."""
        return len(self.layers) + 1

    @property
    def state_width(self) -> int:
        """Elements of raw K (and of raw V) one block must keep: every layer's width."""
        return sum(p.width for p in self.layers)

    def check_cache(self, cache: torch.Tensor) -> int:
        """Validate one K or V cache tensor from MindIE; return its block size."""
        if cache.dim() != 4 or tuple(cache.shape[2:]) != (self.kv_heads, self.head_dim) or not cache.is_contiguous():
            raise ValueError(
                f"MindIE passed a KV cache of shape {list(cache.shape)}; the Baichuan-M1 adapter needs contiguous "
                f"ND caches [num_blocks, block_size, {self.kv_heads}, {self.head_dim}] (NZ layout is not supported)")
        block_size = int(cache.shape[1])
        if self.state_width > block_size * self.width:
            raise ValueError(
                f"cacheBlockSize {block_size} is too small: one block of the conv-state layer must hold "
                f"{self.state_width} values but has {block_size * self.width}; use a larger cacheBlockSize (128)")
        return block_size

    def token_cache(self, cache: torch.Tensor, layer_idx: int) -> torch.Tensor:
        """Layer ``layer_idx``'s contiguous ``[num_blocks * ratio, block_size, width]`` view."""
        placement = self.layers[layer_idx]
        num_blocks, block_size = cache.shape[:2]
        return cache.view(num_blocks * placement.ratio, block_size, placement.width)

    def state_rows(self, state_cache: torch.Tensor, layer_idx: int) -> torch.Tensor:
        """Layer ``layer_idx``'s conv state, one ``[n_kv, head_dim]`` row per physical block (a view)."""
        placement = self.layers[layer_idx]
        num_blocks = state_cache.shape[0]
        start = placement.state_offset
        rows = state_cache.view(num_blocks, -1)[:, start:start + placement.width]
        return rows.view(num_blocks, placement.n_kv, placement.head_dim)
