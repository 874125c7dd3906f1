"""The Ascend NPU kernel backend: torch_npu fused operators behind the ``KernelBackend`` interface.

Each op asks ``support.py`` whether a documented torch_npu operator takes its arguments and
otherwise runs the reference implementation, which is plain torch and therefore runs on the
NPU as composed ops. Composed fallbacks are recorded in ``fallbacks`` (and logged once) so
``m1-ascend doctor`` and users can see them.

``torch_npu`` is imported when a backend is created, never at module import. The device the
caller should place tensors on is ``backend.device``: ``npu:<current>`` by default; tests pass
``device="cpu"`` together with the torch_npu emulator in ``tests/npu_emulator``.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import os
from types import ModuleType

import torch

from .. import reference
from ..interface import PagedAttentionMetadata
from ..plan_cache import PlanCache
from . import support
from .attention import fia_paged_attention, fusion_dense_attention, plan_paged, write_paged_cache
from .support import Route

logger = logging.getLogger(__name__)

CONV_KV_IMPLS = ("custom", "triton", "torch")
TRITON_ENV = "M1_ASCEND_TRITON"  # "1": use triton-ascend's conv-K/V when no custom op is installed
TND_ENV = "M1_ASCEND_FIA_TND"  # "0": keep head_dim-128 layers off the TND layout (older CANN)


def triton_ascend_installed() -> bool:
    """triton-ascend replaces the ``triton`` package; its distribution metadata says it is there."""
    try:
        importlib.metadata.distribution("triton-ascend")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def choose_conv_kv(requested: str | None = None) -> tuple[str, Route]:
    """Pick the conv-K/V implementation: custom Ascend C op → triton-ascend (opt-in) → composed torch."""
    from . import custom_op

    if requested is not None and requested not in CONV_KV_IMPLS:
        raise ValueError(f"conv_kv implementation must be one of {', '.join(CONV_KV_IMPLS)}, got {requested!r}")
    problem = None
    if requested in (None, "custom"):
        problem = custom_op.npu_kernel_problem()
        if problem is None:
            return "custom", Route("conv_kv", f"torch.ops.{custom_op.QUALNAME.replace('::', '.')} (Ascend C)")
        if requested == "custom":
            raise RuntimeError(f"conv_kv='custom' requested but {problem}")
    if requested == "triton" or (requested is None and os.environ.get(TRITON_ENV) == "1"):
        return "triton", Route("conv_kv", "Triton kernels/triton/conv_kv.py")
    reason = problem or "requested"
    if requested is None and triton_ascend_installed():
        reason += f"; triton-ascend is installed but off (set {TRITON_ENV}=1)"
    return "torch", Route("conv_kv", support.COMPOSED, reason)


class NpuBackend:
    """Ascend 910B (Atlas A2) or newer through torch_npu; see the module docstring."""

    name = "npu"

    def __init__(self, device: torch.device | str | None = None, conv_kv_impl: str | None = None,
                 allow_tnd: bool | None = None) -> None:
        self._npu = importlib.import_module("torch_npu")
        self.device = torch.device(device) if device is not None else torch.device("npu", self._npu.npu.current_device())
        self.allow_tnd = os.environ.get(TND_ENV, "1") != "0" if allow_tnd is None else allow_tnd
        self.conv_kv_impl, self.conv_kv_route = choose_conv_kv(conv_kv_impl)
        self.fallbacks: dict[str, str] = {}
        self._use(self.conv_kv_route)
        self._plans = PlanCache(plan_paged)

    @property
    def graph_api(self) -> ModuleType:
        """``torch_npu.npu``: the ACL-graph API (NPUGraph, graph, graph_pool_handle) decode graphs use."""
        return self._npu.npu

    def capture_blocker(self, n_heads: int, n_kv_heads: int, head_dim: int, window: int | None, dtype: torch.dtype,
                        block_size: int) -> str | None:
        """Why a decode step's attention of this geometry cannot be captured into an ACL graph, or None.

        Captured, it must be one FIA call over device tensors plus the host lengths ``update`` refreshes:
        BSND with one query for global layers, TND for windowed ones (BSND decode builds its window
        bias from host data, which a graph would freeze).
        """
        route = support.paged_attention_route(n_heads, n_kv_heads, head_dim, dtype, block_size, window,
                                              prefill=False, allow_tnd=self.allow_tnd)
        if not route.fused:
            return f"paged attention runs as composed torch ops ({route.reason})"
        if window is not None and not support.uses_tnd(head_dim, self.allow_tnd):
            why = f"{TND_ENV}=0" if not self.allow_tnd else f"no TND layout for head_dim {head_dim}"
            return f"sliding-window attention would decode in BSND with a host-built window bias ({why})"
        return None

    def _use(self, route: Route) -> bool:
        """True when the fused kernel applies; remembers (and logs once) each composed fallback."""
        if not route.fused and route.op not in self.fallbacks:
            self.fallbacks[route.op] = route.reason
            logger.info("NPU backend: %s runs as composed torch ops: %s", route.op, route.reason)
        return route.fused

    def rms_norm(self, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        if not self._use(support.rms_norm_route(x.dtype, weight.dtype)):
            return reference.rms_norm(x, weight, eps)
        return self._npu.npu_rms_norm(x, weight, eps)[0]

    def silu_and_mul(self, gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
        if gate.dtype != up.dtype or not self._use(support.silu_and_mul_route(gate.dtype)):
            return reference.silu_and_mul(gate, up)
        return self._npu.npu_swiglu(torch.cat((gate, up), dim=-1), dim=-1)

    def rotary(self, q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor,
               sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """RoPE in fp32 rounded once (the official numerics), on fresh fp32 copies of q and k."""
        route = support.rotary_route(q.shape[-1])
        if not self._use(route):
            return reference.rotary(q, k, cos, sin)
        n_tokens = q.shape[0]

        def as_bsnd(x: torch.Tensor) -> torch.Tensor:
            fresh = x.to(torch.float32, memory_format=torch.contiguous_format, copy=True)
            return fresh.view(1, n_tokens, *x.shape[1:])

        q32, k32 = as_bsnd(q), as_bsnd(k)
        cos4 = cos.float().contiguous().view(1, n_tokens, 1, -1)
        sin4 = sin.float().contiguous().view(1, n_tokens, 1, -1)
        if q.shape[-1] in support.FUSED_ROPE_HEAD_DIMS:
            # In place in eager, but the schema declares no mutation: use what it returns (graphs, compile).
            q32, k32 = self._npu.npu_apply_rotary_pos_emb(q32, k32, cos4, sin4, layout="BSND", rotary_mode="half")
        else:
            q32 = self._npu.npu_rotary_mul(q32, cos4, sin4, rotary_mode="half")
            k32 = self._npu.npu_rotary_mul(k32, cos4, sin4, rotary_mode="half")
        return q32.view(q.shape).to(q.dtype), k32.view(k.shape).to(k.dtype)

    def conv_kv(self, k: torch.Tensor, v: torch.Tensor, conv_k: torch.Tensor, conv_v: torch.Tensor,
                state_k: torch.Tensor, state_v: torch.Tensor, cu_seqlens: torch.Tensor,
                state_slots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.conv_kv_impl == "custom" and self._use(support.conv_kv_kernel_route(k.dtype)):
            return torch.ops.m1_ascend.conv_kv(k, v, conv_k, conv_v, state_k, state_v, cu_seqlens, state_slots)
        if self.conv_kv_impl == "triton":
            from ..triton.conv_kv import conv_kv as triton_conv_kv

            return triton_conv_kv(k, v, conv_k, conv_v, state_k, state_v, cu_seqlens, state_slots)
        return reference.conv_kv(k, v, conv_k, conv_v, state_k, state_v, cu_seqlens, state_slots)

    def dense_attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, q_positions: torch.Tensor,
                        k_positions: torch.Tensor, k_valid: torch.Tensor, window: int | None,
                        scale: float) -> torch.Tensor:
        route = support.dense_attention_route(q.shape[2], k.shape[2], q.shape[3], q.dtype)
        if not self._use(route):
            return reference.dense_attention(q, k, v, q_positions, k_positions, k_valid, window, scale)
        return fusion_dense_attention(self._npu, q, k, v, q_positions, k_positions, k_valid, window, scale)

    def write_paged_cache(self, k: torch.Tensor, v: torch.Tensor, key_cache: torch.Tensor, value_cache: torch.Tensor,
                          slot_mapping: torch.Tensor) -> None:
        write_paged_cache(self._npu, k, v, key_cache, value_cache, slot_mapping)

    def paged_attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_cache: torch.Tensor,
                        value_cache: torch.Tensor, meta: PagedAttentionMetadata, window: int | None,
                        scale: float) -> torch.Tensor:
        n_heads, head_dim = q.shape[1], q.shape[2]
        n_kv = k.shape[1]
        route = support.paged_attention_route(n_heads, n_kv, head_dim, q.dtype, meta.block_size, window,
                                              prefill=meta.max_query_len > 1, allow_tnd=self.allow_tnd,
                                              cache_dtype=key_cache.dtype)
        if not self._use(route):
            return reference.paged_attention(q, k, v, key_cache, value_cache, meta, window, scale)
        write_paged_cache(self._npu, k, v, key_cache, value_cache, meta.slot_mapping)
        plan = self._plans.get(meta, window)
        return fia_paged_attention(self._npu, q, key_cache, value_cache, plan, meta.block_size, n_kv, window,
                                   scale, self.allow_tnd)
