"""The emulated ACL-graph API holds to torch_npu 2.13.0: what capture freezes, what update refreshes, what raises.

These semantics are what make graph-mode results on the emulator honest: a host value that the
decode step forgets to refresh stays stale at replay and gives wrong tokens. The last test holds
the recorded facts (``npu_emulator/torch_npu_facts.py``) to the real wheel (slow suite: downloads
``torch-npu==2.13.0`` without installing it).
"""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from npu_emulator import graphs, template_mask, torch_npu_facts
from npu_emulator.graphs import NPUGraph, graph

pytestmark = pytest.mark.npu_emulated
pytest_plugins = ["npu_emulator.fixtures"]

BLOCK = 16


def paged_setup(lengths: list[int], head_dim: int = 128, n_kv: int = 1, n_heads: int = 2):
    """Paged K/V of ``lengths`` tokens per request (one block table row each) and one decode query each."""
    gen = torch.Generator().manual_seed(0)
    blocks = [-(-n // BLOCK) + 1 for n in lengths]
    cache_k = torch.randn(sum(blocks), BLOCK, n_kv * head_dim, generator=gen).to(torch.bfloat16)
    cache_v = torch.randn(sum(blocks), BLOCK, n_kv * head_dim, generator=gen).to(torch.bfloat16)
    width = max(blocks)
    table = torch.zeros(len(lengths), width, dtype=torch.int32)
    start = 0
    for i, n in enumerate(blocks):
        table[i, :n] = torch.arange(start, start + n)
        start += n
    q = torch.randn(len(lengths), n_heads, head_dim, generator=gen).to(torch.bfloat16)
    return q, cache_k, cache_v, table


def decode(npu, q, cache_k, cache_v, table, kv_lens: list[int], window: int) -> torch.Tensor:
    """One TND (band) and one BSND FIA over the same caches: the two shapes M1's decode step uses."""
    common = dict(block_table=table, block_size=BLOCK, actual_seq_lengths_kv=kv_lens, num_heads=q.shape[1],
                  num_key_value_heads=1, scale=0.1)
    tnd, _ = npu.npu_fused_infer_attention_score(
        q, cache_k, cache_v, input_layout="TND", actual_seq_lengths=list(range(1, q.shape[0] + 1)), sparse_mode=4,
        atten_mask=template_mask(), pre_tokens=window - 1, next_tokens=0, **common)
    bsnd, _ = npu.npu_fused_infer_attention_score(q.view(q.shape[0], 1, *q.shape[1:]), cache_k, cache_v,
                                                  input_layout="BSND", **common)
    return tnd + bsnd.view_as(tnd)


def test_replay_runs_on_current_tensors_with_refreshed_lengths(torch_npu_emulator):
    npu = torch_npu_emulator
    q, cache_k, cache_v, table = paged_setup([20, 35])
    static_q = q.clone()
    g = NPUGraph()
    with graph(g, auto_dispatch_capture=True):
        out = decode(npu, static_q, cache_k, cache_v, table, [20, 35], window=8)
    assert len(g.graph_dispatch_mode.graph_dispatch_records) == 2
    new_q = torch.randn_like(q.float()).to(torch.bfloat16)
    for order in ("update-replay", "replay-update"):  # torch_npu's graph tree / MindIE's order
        static_q.copy_(new_q)
        if order == "update-replay":
            g.update(cpu_update_input=[{"actual_seq_lengths_kv": [21, 36]}])
            g.replay()
        else:
            g.replay()
            g.update(cpu_update_input=[{"actual_seq_lengths_kv": [21, 36]}])
        expected = decode(npu, new_q, cache_k, cache_v, table, [21, 36], window=8)
        torch.testing.assert_close(out, expected)
        new_q = torch.randn_like(q.float()).to(torch.bfloat16)


def test_host_values_stay_frozen_unless_updated(torch_npu_emulator):
    npu = torch_npu_emulator
    q, cache_k, cache_v, table = paged_setup([20, 35])
    g = NPUGraph()
    scale = 3  # a host value the captured code reads
    with graph(g, auto_dispatch_capture=True):
        out = decode(npu, q, cache_k, cache_v, table, [20, 35], window=8) * scale
    scale = 5
    g.update(cpu_update_input=[{"actual_seq_lengths_kv": [20, 35], "pre_tokens": 99}])  # absent at BSND: ignored
    g.replay()
    torch.testing.assert_close(out, decode(npu, q, cache_k, cache_v, table, [20, 35], window=100) * 3)
    # A length list nobody refreshed: replay keeps the captured lengths (the decode step's bug to avoid).
    g.update(cpu_update_input=[{"num_heads": 2}])
    g.replay()
    torch.testing.assert_close(out, decode(npu, q, cache_k, cache_v, table, [20, 35], window=100) * 3)
    assert scale == 5


def test_update_rules_and_messages(torch_npu_emulator):
    npu = torch_npu_emulator
    q, cache_k, cache_v, table = paged_setup([20, 35])
    plain = NPUGraph()
    with graph(plain):
        decode(npu, q, cache_k, cache_v, table, [20, 35], window=8)
    with pytest.raises(RuntimeError) as error:
        plain.update(cpu_update_input=[{"actual_seq_lengths_kv": [1, 1]}])
    assert error.value.args[0] == torch_npu_facts.UPDATE_NOT_AUTO
    auto = NPUGraph()
    with graph(auto, auto_dispatch_capture=True):
        decode(npu, q, cache_k, cache_v, table, [20, 35], window=8)
    with pytest.raises(RuntimeError, match="there are 2 operators .* only 3 elements"):
        auto.update(cpu_update_input=[{}, {}, {}])
    auto.update(cpu_update_input=[{"actual_seq_lengths_kv": [3, 4]}, {"actual_seq_lengths_kv": [5, 6]}])
    assert [r.kwargs["actual_seq_lengths_kv"] for r in auto.graph_dispatch_mode.graph_dispatch_records] == [[3, 4], [5, 6]]
    with pytest.raises(RuntimeError, match="lie in|must be"):  # checked at update, like aclnn's host-side tiling
        auto.update(cpu_update_input=[{"actual_seq_lengths_kv": [20, 10_000]}])


def test_replay_without_update_and_capture_misuse_raise(torch_npu_emulator):
    npu = torch_npu_emulator
    q, cache_k, cache_v, table = paged_setup([20])
    g = NPUGraph()
    with pytest.raises(RuntimeError, match="without a preceding successful capture"):
        g.replay()
    with graph(g, auto_dispatch_capture=True):
        decode(npu, q, cache_k, cache_v, table, [20], window=8)
    g.replay()
    with pytest.raises(RuntimeError, match="would hang"):
        g.replay()
    with pytest.raises(RuntimeError, match="already owns a captured graph"):
        g.capture_begin()
    with pytest.raises(RuntimeError, match="Unknown capture error mode"):
        NPUGraph().capture_begin(capture_error_mode="strict")


@pytest.mark.parametrize("host_read", ["tolist", "item", "int", "nonzero", "bool-index", "tensor", "cpu", "sync"])
def test_host_synchronisation_inside_a_capture_raises(torch_npu_emulator, host_read):
    x = torch.arange(6)
    reads = {"tolist": lambda: x.tolist(), "item": lambda: x[0].item(), "int": lambda: int(x.sum()),
             "nonzero": lambda: x.nonzero(), "bool-index": lambda: x[x > 2], "tensor": lambda: torch.tensor([1, 2]),
             "cpu": lambda: x.cpu(), "sync": lambda: torch_npu_emulator.npu.synchronize()}
    with pytest.raises(RuntimeError, match="during NPU graph capture"), graph(NPUGraph()):
        reads[host_read]()
    assert x.tolist() == [0, 1, 2, 3, 4, 5]  # outside a capture everything works again


def test_emulator_binds_the_recorded_schemas_and_graph_signatures(torch_npu_emulator):
    for name, schema in torch_npu_facts.SCHEMAS.items():
        packet, _, overload = name.partition(".")
        op = getattr(getattr(torch.ops.npu, packet), overload or "default")
        assert op._schema == torch._C.parse_schema(f"npu::{schema}"), name
    for name, function in (("NPUGraph.capture_begin", graphs.NPUGraph.capture_begin),
                           ("NPUGraph.update", graphs.NPUGraph.update), ("graph.__init__", graphs.graph.__init__)):
        parameters = inspect.signature(function).parameters.values()
        shown = ", ".join(p.name if p.default is p.empty else f"{p.name}={p.default!r}" for p in parameters)
        assert f"({shown})" == torch_npu_facts.SIGNATURES[name]


def _wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = Path.home() / ".cache" / "m1-ascend" / "torch-npu-wheel"
    found = sorted(cache.glob("torch_npu-2.13.0-*.whl"))
    if found:
        return found[0]
    result = subprocess.run([sys.executable, "-m", "pip", "download", torch_npu_facts.WHEEL, "--no-deps",
                             "--only-binary=:all:", "-d", str(cache), "-q"], capture_output=True, text=True, timeout=900)
    found = sorted(cache.glob("torch_npu-2.13.0-*.whl"))
    if result.returncode or not found:
        pytest.skip(f"could not download {torch_npu_facts.WHEEL} (no package index?): {result.stderr.strip()[-200:]}")
    return found[0]


@pytest.mark.slow_e2e
def test_recorded_facts_match_the_torch_npu_wheel(tmp_path_factory):
    """Read the real wheel (never installed) and compare every fact the emulator follows."""
    with zipfile.ZipFile(_wheel(tmp_path_factory)) as wheel:
        graphs_src = wheel.read("torch_npu/npu/graphs.py").decode()
        ifa_src = wheel.read("torch_npu/npu/_npugraph_handlers/ifa_handler.py").decode()
        library = next(n for n in wheel.namelist() if n.endswith("lib/libtorch_npu.so"))
        binary = wheel.read(library)
    for schema in torch_npu_facts.SCHEMAS.values():
        assert schema.encode() in binary, f"schema not registered by libtorch_npu.so: {schema[:80]}"
    for message in (torch_npu_facts.REPLAY_BEFORE_CAPTURE, torch_npu_facts.CAPTURE_TWICE,
                    torch_npu_facts.UNKNOWN_CAPTURE_MODE):
        assert message.encode() in binary
    tree = ast.parse(graphs_src)
    functions = {f"{cls.name}.{fn.name}": fn for cls in ast.walk(tree) if isinstance(cls, ast.ClassDef)
                 for fn in cls.body if isinstance(fn, ast.FunctionDef)}
    for name, expected in torch_npu_facts.SIGNATURES.items():
        args = functions[name].args
        defaults = [None] * (len(args.args) - len(args.defaults)) + list(args.defaults)
        shown = ", ".join(a.arg if d is None else f"{a.arg}={ast.literal_eval(d)!r}" for a, d in zip(args.args, defaults,
                                                                                                       strict=True))
        assert f"({shown})" == expected
    # Python messages: the source splits them into adjacent literals; every piece must be there.
    for piece in ("The current graph configuration does not support update,",
                  "Try to capture by setting auto_dispatch_capture=True during capture",
                  "operators that need to be updated by capture, and there ", "elements in the incoming "):
        assert piece in graphs_src
    assert "len(cpu_update_input) == 1" in graphs_src
    handler = ast.parse(ifa_src)
    specs = next(node for node in ast.walk(handler) if isinstance(node, ast.Assign)
                 and getattr(node.targets[0], "id", "") == "UPDATE_SPECS")
    v1 = ast.literal_eval(specs.value)["npu_fused_infer_attention_score.default"]
    assert tuple(tuple(spec) for spec in v1) == torch_npu_facts.FIA_V1_UPDATE_SPECS
    decorated = next(node for node in ast.walk(handler) if isinstance(node, ast.ClassDef)
                     and node.name == "_IFAv1DefaultHandler")
    assert tuple(ast.literal_eval(decorated.decorator_list[0].args[0])) == torch_npu_facts.FIA_V1_HANDLED_OPS
    keys = next(node for node in ast.walk(decorated) if isinstance(node, ast.Assign)
                and getattr(node.targets[0], "id", "") == "out_kwargs_keys")
    assert tuple(ast.literal_eval(keys.value)) == torch_npu_facts.FIA_V1_OUT_KWARGS_KEYS
