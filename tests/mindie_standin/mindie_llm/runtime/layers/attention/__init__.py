"""Stand-in for ``mindie_llm.runtime.layers.attention`` (MindIE-LLM 8b4871a, runtime/layers/attention/__init__.py:12-34).

The process-wide registry of ``Attention`` layers, keyed by prefix in construction order. It is
None until the first ``Attention`` is built, and nothing in the runner clears it: a second model
built in the same process adds to (or, with equal prefixes, replaces entries of) the first one's.
``ModelRunnerExp._bind_kv_cache`` gives cache pair ``i`` to the ``i``-th entry.
"""

from __future__ import annotations

from typing import Any

_global_attn_dict: dict[str, Any] | None = None


def update_global_attn_dict(prefix: str, attn: Any) -> None:
    global _global_attn_dict
    if _global_attn_dict is None:
        _global_attn_dict = {}
    _global_attn_dict[prefix] = attn


def get_global_attn_dict() -> dict[str, Any] | None:
    return _global_attn_dict


def clear_global_attn_dict() -> None:
    _global_attn_dict.clear()


def flush_global_attn_dict(attns: dict[str, Any]) -> None:
    _global_attn_dict.clear()
    _global_attn_dict.update(attns)
