"""``torch.ops.m1_ascend.conv_kv``: the schema the Ascend C kernel implements, checked on CPU.

The CPU kernel is the reference, so the registration itself is what is tested here: the
declared in-place state updates, the fake (meta) implementation and the dispatcher checks of
``torch.library.opcheck``. The Ascend kernel registers for the same schema on CANN hosts.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from m1_ascend.kernels.npu import custom_op
from m1_ascend.kernels.reference import conv_kv as reference_conv_kv


def sample_args(dtype: torch.dtype = torch.float32) -> tuple:
    gen = torch.Generator().manual_seed(0)
    n_kv, head_dim = 2, 16
    k, v = (torch.randn(9, n_kv, head_dim, generator=gen).to(dtype) for _ in range(2))
    weights = [torch.randn(n_kv, 2, generator=gen) for _ in range(2)]
    states = [torch.randn(3, n_kv, head_dim, generator=gen).to(dtype) for _ in range(2)]
    return (k, v, *weights, *states, torch.tensor([0, 4, 9], dtype=torch.int32), torch.tensor([2, 0]))


def test_operator_matches_reference_and_updates_state_in_place():
    args = sample_args(torch.bfloat16)
    expected_states = args[4].clone(), args[5].clone()
    expected = reference_conv_kv(*args[:4], *expected_states, *args[6:])
    out = torch.ops.m1_ascend.conv_kv(*args)
    for got, want in zip((*out, args[4], args[5]), (*expected, *expected_states), strict=True):
        assert torch.equal(got, want)


def test_schema_fake_and_aliasing_pass_opcheck():
    torch.library.opcheck(torch.ops.m1_ascend.conv_kv.default, sample_args())


@pytest.mark.skipif(importlib.util.find_spec(custom_op.EXTENSION) is not None, reason="the Ascend kernel is installed")
def test_without_the_extension_the_problem_names_the_build():
    assert "kernels/ascendc/conv_kv" in (custom_op.npu_kernel_problem() or "")


def test_importing_the_package_and_backend_modules_never_imports_torch_npu():
    code = ("import sys, m1_ascend, m1_ascend.kernels, m1_ascend.kernels.npu, m1_ascend.kernels.npu.custom_op; "
            "from m1_ascend.cli import build_parser; build_parser(); "
            "sys.exit('torch_npu' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0


def test_the_kernels_folder_is_not_a_top_level_kernels_package():
    """From the repository root ``kernels`` is importable, and transformers imports that name (Hugging Face's
    library) at start-up: it must stay empty there, so our operators are not registered twice."""
    repo = Path(__file__).resolve().parents[1]
    code = ("import kernels, m1_ascend, torch; assert not hasattr(kernels, 'get_backend'); "
            "assert torch.ops.m1_ascend.reference_paged_attention and m1_ascend.kernels.get_backend('cpu')")
    result = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
