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
  the last token written into the block, for every decoder layer: decoder layer ``L`` uses token
  row ``L`` of each block (through the same sub-block view as its K/V, row ``L * ratio``). The state
  is thus an ordinary paged cache written by the same scatter kernel at ``block * rows + L * ratio``
  (slots below 0 write nothing), which a captured decode step can do. Because the state lives
  inside the blocks, whatever MindIE does to whole blocks (prefix sharing, swapping to host memory,
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
        layers = []
        for i, (n_kv, d) in enumerate(heads):
            if width % (n_kv * d):
                raise ConfigError(
                    f"layer {i}: K/V width {n_kv * d} does not divide the widest layer's {width}; "
                    "MindIE's uniform per-layer cache cannot hold both geometries")
            layers.append(LayerPlacement(n_kv, d, width // (n_kv * d)))
        return cls(kv_heads, head_dim, tuple(layers))

    @property
    def width(self) -> int:
        return self.kv_heads * self.head_dim

    @property
    def num_cache_layers(self) -> int:
        """Decoder layers plus the conv-state layer: the layer count MindIE must allocate."""
        return len(self.layers) + 1

    def check_cache(self, cache: torch.Tensor) -> int:
        """Validate one K or V cache tensor from MindIE; return its block size."""
        if cache.dim() != 4 or tuple(cache.shape[2:]) != (self.kv_heads, self.head_dim) or not cache.is_contiguous():
            raise ValueError(
                f"MindIE passed a KV cache of shape {list(cache.shape)}; the Baichuan-M1 adapter needs contiguous "
                f"ND caches [num_blocks, block_size, {self.kv_heads}, {self.head_dim}] (NZ layout is not supported)")
        block_size = int(cache.shape[1])
        if len(self.layers) > block_size:
            raise ValueError(
                f"cacheBlockSize {block_size} is too small: the conv-state layer keeps one row per decoder layer "
                f"in every block ({len(self.layers)} layers); use cacheBlockSize 128")
        return block_size

    def token_cache(self, cache: torch.Tensor, layer_idx: int) -> torch.Tensor:
        """Layer ``layer_idx``'s contiguous ``[num_blocks * ratio, block_size, width]`` view."""
        placement = self.layers[layer_idx]
        num_blocks, block_size = cache.shape[:2]
        return cache.view(num_blocks * placement.ratio, block_size, placement.width)

    def state_cache(self, state_cache: torch.Tensor, layer_idx: int) -> tuple[torch.Tensor, int]:
        """Layer ``layer_idx``'s view of the conv-state layer and the flat slot of its row in block 0.

        The view is ``[num_blocks, rows, width]`` with ``rows = block_size * ratio``: the state of
        block ``b`` is at slot ``b * rows + offset``.
        """
        placement = self.layers[layer_idx]
        num_blocks, block_size = state_cache.shape[:2]
        rows = block_size * placement.ratio
        return state_cache.view(num_blocks, rows, placement.width), layer_idx * placement.ratio
