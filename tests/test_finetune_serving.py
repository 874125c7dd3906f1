"""The OpenAI server serves each department adapter as its own model id, unmerged, equal to the merged model."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest
import torch
from finetune_testing import random_adapter
from server_testing import running_server

from m1_ascend.checkpoint import load_checkpoint, save_checkpoint
from m1_ascend.finetune.lora_weights import load_lora, merge_lora
from m1_ascend.server.settings import SettingsError, load_settings

PROMPT = [73, 40, 41, 42, 43, 74]


def complete(client: openai.OpenAI, model: str) -> list[str]:
    response = client.completions.create(model=model, prompt=PROMPT, max_tokens=6, temperature=0,
                                         extra_body={"ignore_eos": True})
    return [response.choices[0].text, response.model]


def test_server_routes_model_ids_to_adapters(tmp_path: Path, tiny_model_dir: Path) -> None:
    adapters = {"cardiology": random_adapter(tiny_model_dir, tmp_path / "cardiology", seed=21),
                "pediatrics": random_adapter(tiny_model_dir, tmp_path / "pediatrics", seed=22)}
    merged_dirs = {}
    for name, path in adapters.items():
        model = load_checkpoint(tiny_model_dir, dtype=torch.float32)
        merge_lora(model, load_lora(path))
        merged_dirs[name] = tmp_path / f"merged-{name}"
        save_checkpoint(model, merged_dirs[name])
        for extra in ("tokenizer.model", "tokenizer_config.json"):
            (merged_dirs[name] / extra).write_bytes((tiny_model_dir / extra).read_bytes())

    spec = ",".join(f"{name}={path}" for name, path in adapters.items())
    with running_server(tiny_model_dir, served_model_name="m1", lora_adapters=spec, dtype="float32") as srv:
        client = srv.client()
        assert sorted(m.id for m in client.models.list().data) == ["cardiology", "m1", "pediatrics"]
        served = {name: complete(client, name) for name in ("m1", "cardiology", "pediatrics")}
        with pytest.raises(openai.NotFoundError, match="oncology"):
            complete(client, "oncology")
    assert served["cardiology"][1] == "cardiology"
    assert len({text for text, _ in served.values()}) == 3  # base and both departments differ
    for name, directory in merged_dirs.items():
        with running_server(directory, served_model_name="merged", dtype="float32") as srv:
            assert complete(srv.client(), "merged")[0] == served[name][0], name


def test_adapter_setting_forms(tmp_path: Path, tiny_model_dir: Path) -> None:
    adapter = random_adapter(tiny_model_dir, tmp_path / "a", seed=1, targets=("o_proj",))
    settings = load_settings({"lora_adapters": f"cardio={adapter}, peds={adapter}"}, environ={})
    assert settings.lora_adapters == {"cardio": str(adapter), "peds": str(adapter)}
    assert load_settings({}, environ={"M1_ASCEND_LORA_ADAPTERS": f"x={adapter}"}).lora_adapters == {"x": str(adapter)}
    with pytest.raises(SettingsError, match="expected name=DIR"):
        load_settings({"lora_adapters": "cardio"}, environ={})
    with pytest.raises(SettingsError, match="not a LoRA adapter directory"):
        load_settings({"lora_adapters": f"cardio={tiny_model_dir}"}, environ={})
