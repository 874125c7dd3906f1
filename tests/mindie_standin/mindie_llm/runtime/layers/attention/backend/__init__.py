"""Stand-in for ``mindie_llm.runtime.layers.attention.backend`` (MindIE-LLM 8b4871a, backend/__init__.py:17-26)."""

from __future__ import annotations

from .abstract import AttentionBackend
from .fia_attention import FiaAttentionBackend


def get_attn_backend(use_mla: bool = False, use_sfa: bool = False) -> AttentionBackend:
    """FIA by default; MLA is not implemented in MindIE either; SFA (sparse attention) is not modelled."""
    if use_mla:
        raise NotImplementedError("MLA is not implemented.")
    if use_sfa:
        raise NotImplementedError("not modelled: SfaBackend (sparse attention)")
    return FiaAttentionBackend()
