"""Serving adapters: each request's department adapter gives exactly the merged model's outputs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from finetune_testing import random_adapter

from m1_ascend.checkpoint import load_checkpoint
from m1_ascend.engine import SamplingParams
from m1_ascend.engine.errors import RequestRejected
from m1_ascend.engine.llm_engine import LLMEngine
from m1_ascend.engine.outputs import RequestOutput
from m1_ascend.finetune.adapters import AdapterBank
from m1_ascend.finetune.lora_weights import AdapterError, load_lora, merge_lora

GREEDY = SamplingParams(temperature=0, max_tokens=6, ignore_eos=True)
PROMPTS = torch.tensor([[73, 40, 41, 42, 43, 74, 50, 51], [73, 60, 61, 62, 74, 70, 71, 72],
                        [71, 73, 44, 45, 46, 74, 52, 53]])


@pytest.fixture(scope="module")
def departments(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("departments")
    return {"cardiology": random_adapter(tiny_model_dir, root / "cardiology", seed=11),
            "pediatrics": random_adapter(tiny_model_dir, root / "pediatrics", seed=12, rank=2, alpha=4.0,
                                         targets=("W_pack", "down_proj"))}


@torch.no_grad()
def merged_logits(base_dir: Path, adapter: Path | None, ids: torch.Tensor) -> torch.Tensor:
    model = load_checkpoint(base_dir, dtype=torch.float32)
    if adapter is not None:
        merge_lora(model, load_lora(adapter))
    return model(input_ids=ids, use_cache=False).logits


@torch.no_grad()
def test_one_batch_mixes_departments_and_matches_each_merged_model(tiny_model_dir: Path,
                                                                   departments: dict[str, Path]) -> None:
    model = load_checkpoint(tiny_model_dir, dtype=torch.float32)
    bank = AdapterBank(model)
    for name, path in departments.items():
        bank.add(name, path)
    rows = ["cardiology", None, "pediatrics"]
    with bank.activate(rows, counts=[PROMPTS.shape[1]] * len(rows)):
        served = model(input_ids=PROMPTS, use_cache=False).logits
    for row, name in enumerate(rows):
        expected = merged_logits(tiny_model_dir, departments[name] if name else None, PROMPTS[row:row + 1])[0]
        torch.testing.assert_close(served[row], expected, rtol=1e-5, atol=1e-5)
    base = merged_logits(tiny_model_dir, None, PROMPTS)
    assert (served[0] - base[0]).abs().max() > 1e-2 and (served[2] - base[2]).abs().max() > 1e-2
    # Outside activate() the hooks are inert: plain base-model outputs.
    torch.testing.assert_close(model(input_ids=PROMPTS, use_cache=False).logits, base, rtol=0, atol=0)


@torch.no_grad()
def test_per_token_selection_within_a_flat_batch(tiny_model_dir: Path, departments: dict[str, Path]) -> None:
    """The engine's flat varlen batch: runs of tokens of different lengths, each with its adapter."""
    model = load_checkpoint(tiny_model_dir, dtype=torch.float32)
    bank = AdapterBank(model)
    bank.add("cardiology", departments["cardiology"])
    x = torch.randn(7, model.config.hidden_size)
    layer = model.model.layers[0].self_attn.W_pack
    plain = layer(x)
    with bank.activate(["cardiology", None, "cardiology"], counts=[2, 4, 1]):
        served = layer(x)
    merged = torch.nn.functional.linear(x, layer.weight + load_lora(departments["cardiology"])
                                        .modules["model.layers.0.self_attn.W_pack"].delta())
    rows_with = [0, 1, 6]
    torch.testing.assert_close(served[rows_with], merged[rows_with], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(served[2:6], plain[2:6], rtol=0, atol=0)


def test_bank_errors_and_removal(tiny_model_dir: Path, departments: dict[str, Path]) -> None:
    model = load_checkpoint(tiny_model_dir, dtype=torch.float32)
    bank = AdapterBank(model)
    bank.add("cardiology", departments["cardiology"])
    with pytest.raises(AdapterError, match="already loaded"):
        bank.add("cardiology", departments["pediatrics"])
    with pytest.raises(AdapterError, match=r"unknown adapter\(s\) \['oncology'\]; loaded: \['cardiology'\]"):
        with bank.activate(["oncology"], counts=[3]):
            pass
    with pytest.raises(RuntimeError, match="tokens in the batch but adapters were activated for 5"):
        with bank.activate(["cardiology"], counts=[5]), torch.no_grad():
            model(input_ids=PROMPTS[:1], use_cache=False)
    bank.remove("cardiology")
    assert bank.names == [] and not any(m._forward_hooks for m in model.modules())



def engine_outputs(engine: LLMEngine, prompts: list[list[int]], adapters: list[str | None],
                   tag: str = "r") -> list[RequestOutput]:
    for i, (prompt, adapter) in enumerate(zip(prompts, adapters, strict=True)):
        engine.add_request(f"{tag}{i}", prompt, GREEDY, adapter=adapter)
    done = {}
    while engine.has_unfinished_requests():
        done |= {o.request_id: o for o in engine.step() if o.finished}
    return [done[f"{tag}{i}"] for i in range(len(prompts))]


def test_engine_serves_each_request_with_its_adapter(tiny_model_dir: Path, departments: dict[str, Path]) -> None:
    """One engine, mixed batches of departments and the base, prefix caching on a shared prefix."""
    prefix = [73, 40, 41, 42, 43, 44, 45, 46]  # two full 4-token blocks shared by every prompt
    prompts = [prefix + [50 + i, 74] for i in range(3)]
    names = ["cardiology", "pediatrics", None]
    kwargs = dict(device="cpu", dtype=torch.float32, block_size=4, max_num_seqs=8, max_num_batched_tokens=64,
                  enable_prefix_caching=True)
    expected = {}
    for name in names:
        model = load_checkpoint(tiny_model_dir, dtype=torch.float32)
        if name is not None:
            merge_lora(model, load_lora(departments[name]))
        expected[name] = [o.token_ids for o in engine_outputs(LLMEngine(model=model, **kwargs), prompts, [None] * 3)]
    assert len({tuple(map(tuple, e)) for e in expected.values()}) == 3  # the departments really answer differently

    engine = LLMEngine(model=tiny_model_dir, adapters=departments, **kwargs)
    first = engine_outputs(engine, prompts, names, "a")
    assert [o.token_ids for o in first] == [expected[n][i] for i, n in enumerate(names)]
    # Second wave, adapters rotated: the shared prefix is cached, but only reused by the same adapter.
    rotated = names[1:] + names[:1]
    second = engine_outputs(engine, prompts, rotated, "b")
    assert [o.token_ids for o in second] == [expected[n][i] for i, n in enumerate(rotated)]
    assert all(o.num_cached_tokens == len(prefix) for o in second)
    with pytest.raises(RequestRejected, match="unknown adapter 'oncology'"):
        engine.add_request("x", prompts[0], GREEDY, adapter="oncology")
