"""Export: merged checkpoint == base + adapter (as peft computes it), and the trust_remote_code files load it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from finetune_testing import MEDICAL_QA, random_adapter
from openmind_testing import IndexUnreachable, openmind_venv

from m1_ascend.checkpoint import load_checkpoint, save_checkpoint
from m1_ascend.cli import main
from m1_ascend.config import preset_config
from m1_ascend.finetune.export import export_merged
from m1_ascend.finetune.files import copy_support_files
from m1_ascend.finetune.hf_code import export_hf_code
from m1_ascend.finetune.lora_weights import AdapterError
from m1_ascend.modeling import BaichuanM1ForCausalLM
from m1_ascend.tokenizer import M1Tokenizer

INPUT_IDS = torch.tensor([[71, 73, 40, 41, 42, 43, 74, 50, 51, 52], [73, 60, 61, 62, 74, 70, 71, 0, 0, 0]])
ATTENTION = torch.tensor([[1] * 10, [1] * 7 + [0] * 3])


@torch.no_grad()
def logits(model: torch.nn.Module) -> torch.Tensor:
    return model(input_ids=INPUT_IDS, attention_mask=ATTENTION, use_cache=False).logits


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    return random_adapter(tiny_model_dir, tmp_path_factory.mktemp("adapter"), seed=7)


def test_merged_checkpoint_equals_base_plus_adapter(tmp_path: Path, tiny_model_dir: Path, adapter_dir: Path) -> None:
    from peft import PeftModel

    base = load_checkpoint(tiny_model_dir, dtype=torch.float32)
    base_logits = logits(base)
    with_adapter = logits(PeftModel.from_pretrained(base, str(adapter_dir)).eval())
    out = export_merged(adapter_dir, tmp_path / "merged", max_shard_size="200KB")
    merged = load_checkpoint(out, dtype=torch.float32)  # validates every tensor's name and shape
    assert (out / "model.safetensors.index.json").exists()
    assert (out / "tokenizer.model").exists() and (out / "tokenizer_config.json").exists()
    valid = ATTENTION.bool()
    assert (with_adapter - base_logits)[valid].abs().max() > 1e-2  # the adapter really changes the outputs
    torch.testing.assert_close(logits(merged)[valid], with_adapter[valid], rtol=1e-5, atol=1e-5)


def test_cli_export_uses_the_recorded_base_and_refuses_a_full_output(tmp_path: Path, adapter_dir: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "merged"
    assert main(["export", "--adapter", str(adapter_dir), "--output", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert main(["export", "--adapter", str(adapter_dir), "--output", str(out)]) == 1
    assert "already exists and is not empty" in capsys.readouterr().err


def test_adapters_that_cannot_be_merged_exactly_are_refused(tmp_path: Path, tiny_model_dir: Path,
                                                            adapter_dir: Path) -> None:
    dora = tmp_path / "dora"
    shutil.copytree(adapter_dir, dora)
    config = json.loads((dora / "adapter_config.json").read_text())
    (dora / "adapter_config.json").write_text(json.dumps({**config, "use_dora": True}))
    with pytest.raises(AdapterError, match="DoRA adapters are not supported"):
        export_merged(dora, tmp_path / "out1", tiny_model_dir)

    other_base = tmp_path / "other-base"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        save_checkpoint(BaichuanM1ForCausalLM(preset_config("tiny", intermediate_size=96)), other_base)
    foreign = random_adapter(other_base, tmp_path / "foreign", seed=3, targets=("gate_proj",))
    with pytest.raises(AdapterError, match="different base model"):
        export_merged(foreign, tmp_path / "out2", tiny_model_dir)
    with pytest.raises(AdapterError, match="not a LoRA adapter directory"):
        export_merged(tiny_model_dir, tmp_path / "out3", tiny_model_dir)


def test_support_files_travel_but_not_the_weight_manifest(tmp_path: Path) -> None:
    """A copied SHA256SUMS would describe the base's weights, and the server would refuse the merged ones."""
    source = tmp_path / "base"
    source.mkdir()
    for name in ("SHA256SUMS", "config.json", "model-00001-of-00002.safetensors", "tokenizer.model", "generation_config.json"):
        (source / name).write_text(name)
    assert copy_support_files(source, tmp_path / "merged") == ["generation_config.json", "tokenizer.model"]


LOAD_SCRIPT = """
import json, sys, torch, transformers
from transformers import AutoModelForCausalLM
model = AutoModelForCausalLM.from_pretrained(sys.argv[1], trust_remote_code=True)
ids = torch.tensor([[71, 73, 40, 41, 42, 74, 50]])
print(transformers.__version__, type(model).__module__)
print(json.dumps(model(ids).logits[0].tolist()))
"""


def load_through_remote_code(python: str, checkpoint: Path, modules_cache: Path) -> tuple[str, torch.Tensor]:
    """Load in a fresh interpreter that never imported m1_ascend: only auto_map can find the model."""
    env = {**os.environ, "HF_MODULES_CACHE": str(modules_cache), "TRANSFORMERS_VERBOSITY": "error"}
    run = subprocess.run([python, "-c", LOAD_SCRIPT, str(checkpoint)], capture_output=True, text=True, env=env,
                         timeout=300, cwd=str(modules_cache))
    assert run.returncode == 0, run.stderr[-3000:]
    header, values = run.stdout.strip().splitlines()[-2:]
    return header, torch.tensor(json.loads(values))


@pytest.fixture(scope="module")
def hf_checkpoint(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    directory = tmp_path_factory.mktemp("hf") / "m1ckpt"
    shutil.copytree(tiny_model_dir, directory)
    (directory / "modeling_baichuan.py").write_text("import flash_attn  # the official file\n")
    assert export_hf_code(directory) == ["configuration_baichuan.py", "modeling_baichuan.py",
                                         "tokenization_baichuan_m1.py", "config.json", "tokenizer_config.json"]
    return directory


def test_export_hf_code_loads_our_model_with_trust_remote_code(tmp_path: Path, hf_checkpoint: Path,
                                                               tiny_model_dir: Path) -> None:
    assert (hf_checkpoint / "modeling_baichuan.py.bak").read_text() == "import flash_attn  # the official file\n"
    assert json.loads((hf_checkpoint / "config.json").read_text())["auto_map"] == {
        "AutoConfig": "configuration_baichuan.BaichuanM1Config",
        "AutoModelForCausalLM": "modeling_baichuan.BaichuanM1ForCausalLM"}
    assert export_hf_code(hf_checkpoint) == []  # idempotent
    header, remote = load_through_remote_code(sys.executable, hf_checkpoint, tmp_path)
    assert "transformers_modules" in header and header.endswith("modeling_baichuan")
    expected = load_checkpoint(tiny_model_dir, dtype=torch.float32)(torch.tensor([[71, 73, 40, 41, 42, 74, 50]])).logits[0]
    torch.testing.assert_close(remote, expected.detach(), rtol=1e-5, atol=1e-5)


TOKENIZER_SCRIPT = """
import json, sys
from transformers import AutoTokenizer
tok = AutoTokenizer.from_pretrained(sys.argv[1], trust_remote_code=True)
print(json.dumps({"class": type(tok).__name__, "pad": [tok.pad_token, tok.pad_token_id], "eos": tok.eos_token_id,
                  "ids": [tok.encode(text, add_special_tokens=False) for text in json.loads(sys.argv[2])]}))
"""


def test_export_hf_code_ships_a_tokenizer_autotokenizer_loads(tmp_path: Path, hf_checkpoint: Path) -> None:
    """openMind loads the tokenizer through AutoTokenizer: same ids as ours, role tokens as single ids, a pad token."""
    ours = M1Tokenizer.from_pretrained(hf_checkpoint)
    chat = [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": MEDICAL_QA[0][0]},
            {"role": "assistant", "content": MEDICAL_QA[0][1]}]
    texts = [question for question, _ in MEDICAL_QA] + [ours.render_chat(chat, add_generation_prompt=False)]
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path), "TRANSFORMERS_VERBOSITY": "error"}
    run = subprocess.run([sys.executable, "-c", TOKENIZER_SCRIPT, str(hf_checkpoint), json.dumps(texts)],
                         capture_output=True, text=True, env=env, timeout=300, cwd=str(tmp_path))
    assert run.returncode == 0, run.stderr[-3000:]
    loaded = json.loads(run.stdout.strip().splitlines()[-1])
    assert loaded["class"] == "BaichuanM1Tokenizer"
    assert loaded["pad"] == ["<unk>", 0] and loaded["eos"] == ours.eos_token_id  # config.json's pad_token_id is 0
    assert loaded["ids"][:-1] == [ours.encode(text) for text in texts[:-1]]
    assert loaded["ids"][-1] == ours.apply_chat_template(chat, add_generation_prompt=False)
    assert loaded["ids"][-1][0] == ours.role_token_ids["<B_SYS>"]


@pytest.mark.slow_e2e  # openMind's venv: transformers 4.45.2, built once (minutes) by openmind_testing
def test_export_hf_code_loads_under_transformers_445(tmp_path: Path, hf_checkpoint: Path) -> None:
    python = os.environ.get("M1_ASCEND_TF445_PYTHON")
    if not python:
        try:
            python = str(openmind_venv())
        except IndexUnreachable as exc:
            pytest.skip(f"package index unreachable, no transformers 4.45 environment: {exc}")
    header, _ = load_through_remote_code(python, hf_checkpoint, tmp_path)
    assert header.startswith("4.45.") and header.endswith("modeling_baichuan")


def test_export_hf_code_cli_refuses_other_models(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    assert main(["export-hf-code", str(tmp_path)]) == 1
    assert "not 'baichuan_m1'" in capsys.readouterr().err
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "baichuan_m1"}))
    assert main(["export-hf-code", str(tmp_path)]) == 1
    assert "no tokenizer.model" in capsys.readouterr().err
