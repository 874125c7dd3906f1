"""The Triton conv-K/V kernel against the reference, run by Triton's CPU interpreter.

``TRITON_INTERPRET=1`` is set here, at collection, before the kernel module is imported (the
interpreter is chosen when ``@triton.jit`` runs). For a native run of the same tests set
``M1_TRITON_DEVICE``: ``cuda`` on a GPU with upstream Triton, ``npu`` on a 910B with
triton-ascend (``M1_TRITON_DEVICE=npu pytest -m triton_interpret tests/test_triton_conv_kv.py``).
fp32/fp16 results must be bit-identical to the reference; bf16 within a couple of bf16 ulps of the
tensor's scale, because the interpreter truncates fp32->bf16 casts where torch rounds to nearest
even, and the two rounded products can cancel.
"""

from __future__ import annotations

import os

import pytest
import torch

NATIVE_DEVICE = os.environ.get("M1_TRITON_DEVICE")
if not NATIVE_DEVICE:
    os.environ["TRITON_INTERPRET"] = "1"
pytest.importorskip("triton", reason="triton is not installed (pip install -c constraints.txt triton numpy)")
pytest.importorskip("numpy", reason="Triton's interpreter needs numpy")
if NATIVE_DEVICE == "npu":
    pytest.importorskip("torch_npu", reason="M1_TRITON_DEVICE=npu needs torch_npu and triton-ascend")

from m1_ascend.kernels.reference import conv_kv as reference_conv_kv  # noqa: E402
from m1_ascend.kernels.triton.conv_kv import conv_kv  # noqa: E402

pytestmark = pytest.mark.triton_interpret
pytest_plugins = ["npu_emulator.fixtures"]
DEVICE = torch.device(NATIVE_DEVICE or "cpu")


def assert_bf16_close(got: torch.Tensor, want: torch.Tensor) -> None:
    scale = float(want.float().abs().max())
    torch.testing.assert_close(got.float(), want.float(), rtol=2 ** -7, atol=2 ** -6 * scale)


def packed_kv(n_tokens: int, n_kv: int, head_dim: int, dtype: torch.dtype, seed: int):
    """K and V as strided views of a packed [Q | K | V] projection, like the model's W_pack split."""
    gen = torch.Generator().manual_seed(seed)
    q_width, kv_width = 64, n_kv * head_dim
    packed = torch.randn(n_tokens, q_width + 2 * kv_width, generator=gen).to(dtype).to(DEVICE)
    k = packed[:, q_width:q_width + kv_width].view(n_tokens, n_kv, head_dim)
    v = packed[:, q_width + kv_width:].view(n_tokens, n_kv, head_dim)
    weights = [torch.randn(n_kv, 2, generator=gen).to(DEVICE) for _ in range(2)]
    state = torch.randn(6, n_kv, head_dim, generator=gen).to(dtype).to(DEVICE)
    return k, v, weights, state


def run_both(k, v, weights, state, cu, slots, **tiles):
    cu, slots = cu.to(DEVICE), slots.to(DEVICE)
    ours = [state.clone(), state.clone()]
    theirs = [state.clone(), state.clone()]
    out = conv_kv(k, v, *weights, *ours, cu, slots, **tiles)
    expected = reference_conv_kv(k, v, *weights, *theirs, cu, slots)
    return [*out, *ours], [*expected, *theirs]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("geometry", [(2, 32), (8, 16)])
def test_varlen_prefill_chunks_and_decode_tokens(dtype, geometry):
    n_kv, head_dim = geometry
    # a fresh prompt, a decode token, a prefill chunk longer than one tile, another decode token
    cu = torch.tensor([0, 7, 8, 29, 30], dtype=torch.int32)
    slots = torch.tensor([4, 0, 5, 2])
    k, v, weights, state = packed_kv(30, n_kv, head_dim, dtype, seed=1)
    got, want = run_both(k, v, weights, state, cu, slots, block_t=8, block_c=32)
    for a, b in zip(got, want, strict=True):
        if dtype == torch.bfloat16:
            assert_bf16_close(a.cpu(), b.cpu())
        else:
            assert torch.equal(a.cpu(), b.cpu())


def test_chunked_calls_equal_one_call():
    k, v, weights, state = packed_kv(40, 2, 32, torch.float32, seed=2)
    slot = torch.tensor([3], device=DEVICE)

    def lengths(n: int) -> torch.Tensor:
        return torch.tensor([0, n], dtype=torch.int32, device=DEVICE)

    one_state = [state.clone(), state.clone()]
    one = conv_kv(k, v, *weights, *one_state, lengths(40), slot)
    chunk_state = [state.clone(), state.clone()]
    pieces = [conv_kv(k[a:b], v[a:b], *weights, *chunk_state, lengths(b - a), slot) for a, b in ((0, 17), (17, 18), (18, 40))]
    for i in range(2):
        assert torch.equal(torch.cat([p[i] for p in pieces]), one[i])
        assert torch.equal(chunk_state[i], one_state[i])


def test_real_geometry_on_packed_views():
    for n_kv, head_dim in ((2, 256), (8, 128)):  # M1's global and sliding-window layers
        k, v, weights, state = packed_kv(12, n_kv, head_dim, torch.float16, seed=3)
        got, want = run_both(k, v, weights, state, torch.tensor([0, 9, 10, 12], dtype=torch.int32),
                             torch.tensor([1, 0, 5]))
        for a, b in zip(got, want, strict=True):
            assert torch.equal(a.cpu(), b.cpu())


def test_empty_sequence_keeps_its_state():
    k, v, weights, state = packed_kv(5, 2, 32, torch.float32, seed=4)
    states = [state.clone(), state.clone()]
    conv_kv(k, v, *weights, *states, torch.tensor([0, 0, 5], dtype=torch.int32, device=DEVICE),
            torch.tensor([1, 2], device=DEVICE))
    assert torch.equal(states[0][1], state[1]) and torch.equal(states[0][2], k[4])


@pytest.mark.npu_emulated
def test_npu_backend_can_route_conv_kv_to_triton(torch_npu_emulator):
    if NATIVE_DEVICE:
        pytest.skip("the emulated backend runs on CPU tensors")
    from m1_ascend.kernels.npu import NpuBackend

    backend = NpuBackend(device="cpu", conv_kv_impl="triton")
    k, v, weights, state = packed_kv(9, 2, 32, torch.float16, seed=5)
    cu, slots = torch.tensor([0, 4, 9], dtype=torch.int32), torch.tensor([0, 1])
    states = [state.clone(), state.clone()]
    out = backend.conv_kv(k, v, *weights, *states, cu, slots)
    _, want = run_both(k, v, weights, state, cu, slots)
    for a, b in zip([*out, *states], want, strict=True):
        assert torch.equal(a, b)
    assert backend.conv_kv_route.fused and "conv_kv" not in backend.fallbacks
