"""Stand-in for ``mindie_llm.runtime.layers.attention``: the registry MindIE binds KV caches through."""

_global_attn_dict = {}


def update_global_attn_dict(prefix, layer):
    _global_attn_dict[prefix] = layer


def get_global_attn_dict():
    return _global_attn_dict


def clear_global_attn_dict():
    _global_attn_dict.clear()
