"""Stand-in for ``mindie_llm.runtime.layers.attention.attention_layer`` (no attention backend)."""

from torch import nn

from . import update_global_attn_dict


class Attention(nn.Module):
    def __init__(self, num_heads: int, head_size: int, scale: float, num_kv_heads: int | None = None,
                 prefix: str = "", attn_backend=None, **extra_impl_args) -> None:
        super().__init__()
        self.key_cache = None
        self.value_cache = None
        update_global_attn_dict(prefix, self)
        self.prefix = prefix
        self.num_heads, self.head_size, self.scale, self.num_kv_heads = num_heads, head_size, scale, num_kv_heads

    def forward(self, query, key, value):
        raise NotImplementedError("the stand-in has no attention backend")
