"""What a 910B owner runs first: each NPU operator path the model relies on, held to the CPU reference.

Every check runs the NPU backend (torch_npu's fused operators) and the pure-PyTorch reference on the
same random inputs and compares them; the questions it answers are the ones only a device can
(docs/npu.md, "What only a 910B can confirm"): the FIA window convention (``pre_tokens`` W-1 vs W) in
TND, single-token BSND decode with ``pse_shift`` for both of Baichuan-M1's GQA geometries, head_dim
256 paged prefill, RoPE in fp32, cache writes with negative (padding) slots, the conv-K/V kernels
where installed, and decode graphs (ACL graph capture and replay) against eager decoding, with step
times. ``m1-ascend selftest --device npu --report out.json`` writes one report; off device the same
checks run on the torch_npu emulator of the test suite.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from .kernels import PagedAttentionMetadata, ReferenceBackend
from .kernels.npu import NpuBackend

BLOCK = 128


@dataclass
class Check:
    name: str
    status: str  # "pass", "fail" or "skip"
    detail: str = ""
    measured: dict[str, Any] = field(default_factory=dict)


def _tolerance(reference: torch.Tensor, ulps: int = 8) -> float:
    return ulps * 2 ** -8 * float(reference.abs().max().clamp(min=1.0))


def _compare(name: str, got: torch.Tensor, want: torch.Tensor, ulps: int = 8, **measured: Any) -> Check:
    error = float((got.float().cpu() - want.float().cpu()).abs().max())
    allowed = _tolerance(want.float())
    status = "pass" if error <= allowed else "fail"
    return Check(name, status, f"max |npu - reference| = {error:.4g} (allowed {allowed:.4g})",
                 {"max_error": error, "allowed": allowed, **measured})


def _paged_case(device: torch.device, shapes: list[tuple[int, int]], n_heads: int, n_kv: int, head_dim: int,
                seed: int) -> tuple[torch.Tensor, ...]:
    """Random q/k/v, caches holding each sequence's past and a step of ``(past, new)`` tokens per sequence."""
    gen = torch.Generator().manual_seed(seed)
    width = n_kv * head_dim
    num_blocks = sum(-(-(p + q) // BLOCK) for p, q in shapes) + 1
    cache_k = (torch.randn(num_blocks, BLOCK, width, generator=gen) * 0.5).to(torch.bfloat16)
    cache_v = torch.randn(num_blocks, BLOCK, width, generator=gen).to(torch.bfloat16)
    tables, slots, next_block = [], [], 1
    for past, new in shapes:
        count = -(-(past + new) // BLOCK)
        tables.append(list(range(next_block, next_block + count)))
        next_block += count
        slots += [tables[-1][pos // BLOCK] * BLOCK + pos % BLOCK for pos in range(past, past + new)]
    width_cols = max(len(t) for t in tables)
    table = torch.tensor([t + [0] * (width_cols - len(t)) for t in tables], dtype=torch.int32)
    cu = torch.tensor([0, *torch.tensor([q for _, q in shapes]).cumsum(0).tolist()], dtype=torch.int32)
    n_tokens = int(cu[-1])
    q = (torch.randn(n_tokens, n_heads, head_dim, generator=gen) * 0.5).to(torch.bfloat16)
    k = (torch.randn(n_tokens, n_kv, head_dim, generator=gen) * 0.5).to(torch.bfloat16)
    v = torch.randn(n_tokens, n_kv, head_dim, generator=gen).to(torch.bfloat16)
    meta = PagedAttentionMetadata(cu, torch.tensor([p + q for p, q in shapes], dtype=torch.int32), table,
                                  torch.tensor(slots), BLOCK, max(q for _, q in shapes), max(p + q for p, q in shapes))
    return q, k, v, cache_k, cache_v, meta


def _to(meta: PagedAttentionMetadata, device: torch.device) -> PagedAttentionMetadata:
    return PagedAttentionMetadata(meta.cu_seqlens_q.to(device), meta.context_lens.to(device),
                                  meta.block_tables.to(device), meta.slot_mapping.to(device), meta.block_size,
                                  meta.max_query_len, meta.max_context_len)


def _paged(name: str, backend: NpuBackend, device: torch.device, shapes: list[tuple[int, int]], heads: tuple[int, int, int],
           window: int | None, seed: int) -> Check:
    q, k, v, cache_k, cache_v, meta = _paged_case(torch.device("cpu"), shapes, *heads, seed)
    scale = heads[2] ** -0.5
    want = ReferenceBackend.paged_attention(q, k, v, cache_k.clone(), cache_v.clone(), meta, window, scale)
    start = time.perf_counter()
    got = backend.paged_attention(q.to(device), k.to(device), v.to(device), cache_k.to(device), cache_v.to(device),
                                  _to(meta, device), window, scale)
    route = "composed fallback: " + backend.fallbacks["paged_attention"] if "paged_attention" in backend.fallbacks \
        else "fused FIA"
    return _compare(name, got, want, route=route, seconds=time.perf_counter() - start)


def check_tnd_window(backend: NpuBackend, device: torch.device) -> Check:
    """TND + block table + sparse_mode 4 with a small window: pre_tokens W-1 must give W keys per query."""
    return _paged("fia_tnd_window", backend, device, [(40, 9), (3, 1), (150, 1)], (8, 2, 128), window=5, seed=1)


def check_bsnd_decode_pse_shift(device: torch.device) -> list[Check]:
    """Single-token BSND decode, window from a trimmed table + pse_shift, for both GQA geometries."""
    checks = []
    for label, heads in (("40q/8kv x 128", (40, 8, 128)), ("20q/2kv x 256", (20, 2, 256))):
        backend = NpuBackend(device=device, allow_tnd=False)
        checks.append(_paged(f"fia_bsnd_decode_pse_shift[{label}]", backend, device, [(300, 1), (20, 1), (129, 1)],
                             heads, window=150, seed=2))
    return checks


def check_paged_prefill_d256(backend: NpuBackend, device: torch.device) -> Check:
    return _paged("fia_paged_prefill_d256", backend, device, [(0, 70), (130, 40)], (20, 2, 256), window=None, seed=3)


def check_rope_fp32(backend: NpuBackend, device: torch.device) -> list[Check]:
    checks = []
    for head_dim, op in ((128, "npu_apply_rotary_pos_emb"), (256, "npu_rotary_mul")):
        gen = torch.Generator().manual_seed(head_dim)
        q = torch.randn(33, 4, head_dim, generator=gen).to(torch.bfloat16)
        k = torch.randn(33, 2, head_dim, generator=gen).to(torch.bfloat16)
        angles = torch.arange(33).float()[:, None] * (1e4 ** (-torch.arange(0, head_dim, 2).float() / head_dim))
        angles = torch.cat((angles, angles), dim=-1)
        want = ReferenceBackend.rotary(q, k, angles.cos(), angles.sin())
        got = backend.rotary(q.to(device), k.to(device), angles.cos().to(device), angles.sin().to(device))
        checks.append(_compare(f"rope_fp32[{op}, head_dim {head_dim}]", torch.cat([got[0].flatten(), got[1].flatten()]),
                               torch.cat([want[0].flatten(), want[1].flatten()])))
    return checks


def check_scatter_negative_slots(backend: NpuBackend, device: torch.device) -> Check:
    """Padding rows (slot -1) must write nothing; the kernel source skips them, the doc asks for [0, N-1]."""
    cache_k = torch.zeros(2, BLOCK, 2 * 128, dtype=torch.bfloat16, device=device)
    cache_v = torch.zeros_like(cache_k)
    rows = torch.ones(3, 2, 128, dtype=torch.bfloat16, device=device)
    backend.write_paged_cache(rows, rows, cache_k, cache_v, torch.tensor([-1, 5, -1], device=device))
    written = int((cache_k.view(-1, 256).abs().sum(dim=1) > 0).sum())
    ok = written == 1 and bool(cache_k.view(-1, 256)[5].eq(1).all())
    return Check("scatter_negative_slots", "pass" if ok else "fail", f"rows written: {written} (expected 1: slot 5)",
                 {"rows_written": written})


def check_conv_kv(device: torch.device) -> list[Check]:
    checks = []
    gen = torch.Generator().manual_seed(4)
    k = torch.randn(12, 8, 128, generator=gen).to(torch.bfloat16)
    v = torch.randn(12, 8, 128, generator=gen).to(torch.bfloat16)
    taps = torch.rand(8, 2, generator=gen).to(torch.bfloat16)
    state = torch.randn(3, 8, 128, generator=gen).to(torch.bfloat16)
    cu, slots = torch.tensor([0, 5, 6, 12], dtype=torch.int32), torch.tensor([2, 0, 1])
    want = ReferenceBackend.conv_kv(k, v, taps, taps, state.clone(), state.clone(), cu, slots)
    for impl in ("custom", "triton"):
        try:
            backend = NpuBackend(device=device, conv_kv_impl=impl)
        except RuntimeError as exc:
            checks.append(Check(f"conv_kv[{impl}]", "skip", str(exc).splitlines()[0]))
            continue
        if impl == "triton" and not _triton_ascend():
            checks.append(Check(f"conv_kv[{impl}]", "skip", "triton-ascend is not installed"))
            continue
        d = device
        got = backend.conv_kv(k.to(d), v.to(d), taps.to(d), taps.to(d), state.clone().to(d), state.clone().to(d),
                              cu.to(d), slots.to(d))
        checks.append(_compare(f"conv_kv[{impl}]", torch.cat([got[0].flatten(), got[1].flatten()]),
                               torch.cat([want[0].flatten(), want[1].flatten()])))
    return checks


def _triton_ascend() -> bool:
    from .kernels.npu.backend import triton_ascend_installed

    return triton_ascend_installed()


def check_decode_graphs(device: torch.device, backend_factory: Callable[[], NpuBackend]) -> Check:
    """A small Baichuan-M1-shaped model served eagerly and with ACL-graph decode: same tokens, step times."""
    from .config import preset_config
    from .engine import SamplingParams
    from .engine.llm_engine import LLMEngine
    from .modeling import BaichuanM1ForCausalLM

    config = preset_config("tiny", hidden_size=512, intermediate_size=512, num_hidden_layers=4, num_attention_heads=2,
                           num_key_value_heads=1, num_swa_attention_heads=4, num_swa_key_value_heads=2,
                           sliding_window=160, max_position_embeddings=1024, initializer_range=0.1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = BaichuanM1ForCausalLM(config).eval().to(torch.bfloat16)
    gen = torch.Generator().manual_seed(5)
    prompts = [torch.randint(3, 320, (n,), generator=gen).tolist() for n in (180, 40, 250)]
    params = SamplingParams(temperature=0, max_tokens=24, ignore_eos=True, logprobs=2)
    results = {}
    for eager in (True, False):
        engine = LLMEngine(model=model, device="cpu" if device.type == "cpu" else "npu", backend=backend_factory(),
                           block_size=BLOCK, max_num_seqs=4, enforce_eager=eager, dtype=torch.bfloat16)
        for i, prompt in enumerate(prompts):
            engine.add_request(str(i), prompt, params)
        outputs, decode_times = {}, []
        while engine.has_unfinished_requests():
            decoding = not engine.scheduler.waiting and all(s.num_uncomputed_tokens == 1 for s in engine.scheduler.running)
            start = time.perf_counter()
            finished = engine.step()
            if decoding:
                decode_times.append(time.perf_counter() - start)
            outputs.update({out.request_id: out for out in finished if out.finished})
        results[eager] = (outputs, 1e3 * sorted(decode_times)[len(decode_times) // 2])
    (eager_out, eager_ms), (graph_out, graph_ms) = results[True], results[False]
    detail, ok = [], True
    for key in sorted(eager_out):
        a, b = eager_out[key], graph_out[key]
        if a.token_ids == b.token_ids:
            continue
        step = next(i for i, (x, y) in enumerate(zip(a.token_ids, b.token_ids, strict=True)) if x != y)
        top = a.logprobs[step].top
        tie = len(top) > 1 and top[0][1] - top[1][1] <= 0.1
        ok &= tie
        detail.append(f"request {key} diverges at token {step} ({'a near-tie' if tie else 'NOT a tie'})")
    measured = {"eager_step_ms": eager_ms, "graph_step_ms": graph_ms, "speedup": eager_ms / graph_ms}
    return Check("decode_graph_vs_eager", "pass" if ok else "fail",
                 "; ".join(detail) or f"identical greedy tokens; decode step {eager_ms:.2f} ms eager, {graph_ms:.2f} ms "
                                      f"graph ({eager_ms / graph_ms:.2f}x)", measured)


def run_selftest(device: torch.device) -> list[Check]:
    """Every check, each isolated: a failure or an exception in one does not stop the others."""
    def backend() -> NpuBackend:
        return NpuBackend(device=device)

    plan: list[tuple[str, Callable[[], Check | list[Check]]]] = [
        ("fia_tnd_window", lambda: check_tnd_window(backend(), device)),
        ("fia_bsnd_decode_pse_shift", lambda: check_bsnd_decode_pse_shift(device)),
        ("fia_paged_prefill_d256", lambda: check_paged_prefill_d256(backend(), device)),
        ("rope_fp32", lambda: check_rope_fp32(backend(), device)),
        ("scatter_negative_slots", lambda: check_scatter_negative_slots(backend(), device)),
        ("conv_kv", lambda: check_conv_kv(device)),
        ("decode_graph_vs_eager", lambda: check_decode_graphs(device, backend)),
    ]
    checks: list[Check] = []
    for name, run in plan:
        try:
            result = run()
        except Exception as exc:  # report it and go on: the owner needs the whole picture
            checks.append(Check(name, "fail", f"{type(exc).__name__}: {exc}".splitlines()[0],
                                {"traceback": traceback.format_exc()}))
            continue
        checks += result if isinstance(result, list) else [result]
    return checks


def report(checks: list[Check], environment: dict[str, Any]) -> dict[str, Any]:
    counts = {status: sum(c.status == status for c in checks) for status in ("pass", "fail", "skip")}
    return {"summary": counts, "environment": environment, "checks": [asdict(c) for c in checks]}
