"""Shared pieces of the fine-tuning tests: a small medical Q&A set, random peft adapters, one CPU thread."""

from __future__ import annotations

import json
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "deploy" / "openmind"
TINY_RECIPE = RECIPES / "tiny_lora_sft_cpu.yaml"

# Written for these tests; the words come from the test tokenizer's corpus so they tokenize compactly.
MEDICAL_QA = [
    ("What is hypertension?", "Hypertension is high blood pressure."),
    ("What causes a fever?", "A fever is usually caused by an infection."),
    ("What is asthma?", "Asthma is a long term condition of the airways."),
    ("What is a normal heart rate?", "Between sixty and one hundred beats per minute."),
    ("How do vaccines work?", "Vaccines train the immune system to recognise a germ."),
    ("What is anaemia?", "Anaemia means the blood has too few red cells."),
    ("What is the flu?", "The flu is a viral infection of the nose, throat and lungs."),
    ("What is an allergy?", "An allergy is a reaction of the immune system."),
]


def write_medical_qa(directory: Path) -> Path:
    """An alpaca JSONL set plus a sharegpt JSON set, and the ``custom_dataset_info`` naming them."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / "qa.jsonl").open("w", encoding="utf-8") as f:
        for question, answer in MEDICAL_QA:
            f.write(json.dumps({"instruction": question, "input": "", "output": answer}) + "\n")
    dialogue = [{"conversations": [{"from": "human", "value": q}, {"from": "gpt", "value": a}]}
                for q, a in MEDICAL_QA[:2]]
    (directory / "dialogue.json").write_text(json.dumps(dialogue), encoding="utf-8")
    info = {"medical_qa": {"local_path": str(directory), "file_name": "qa.jsonl", "formatting": "alpaca"},
            "medical_dialogue": {"local_path": str(directory), "file_name": "dialogue.json", "formatting": "sharegpt"}}
    path = directory / "dataset_info.json"
    path.write_text(json.dumps(info), encoding="utf-8")
    return path


def tiny_recipe_overrides(model_dir: Path, info: Path, output_dir: Path) -> list[str]:
    """--set values that point the shipped tiny recipe at the test's model, data and output."""
    return [f"model_name_or_path={model_dir}", f"custom_dataset_info={info}", f"output_dir={output_dir}",
            "dataset=medical_qa,medical_dialogue"]


def random_adapter(base_dir: Path, output_dir: Path, seed: int, rank: int = 4, alpha: float = 8.0,
                   targets: tuple[str, ...] = ("W_pack", "o_proj", "gate_proj", "up_proj", "down_proj")) -> Path:
    """A peft LoRA adapter with random non-zero A and B (as if trained), saved by peft itself."""
    from peft import LoraConfig, get_peft_model

    from m1_ascend.checkpoint import load_checkpoint

    model = load_checkpoint(base_dir, dtype=torch.float32)
    model.name_or_path = model.config.name_or_path = str(base_dir)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        peft_model = get_peft_model(model, LoraConfig(r=rank, lora_alpha=alpha, target_modules=list(targets),
                                                      init_lora_weights=False, task_type="CAUSAL_LM"))
        with torch.no_grad():  # peft's random init leaves B small; make every delta clearly visible
            for name, param in peft_model.named_parameters():
                if "lora_B" in name:
                    param.normal_(0.0, 0.2)
    peft_model.save_pretrained(str(output_dir))
    return output_dir
