"""Recipes: every shipped YAML is valid openMind, and bad recipes fail early with the key and its line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from finetune_testing import RECIPES, REPO, TINY_RECIPE

from m1_ascend.finetune.openmind_schema import OPENMIND_KEYS, TRAINING_ARGUMENTS_445, is_openmind_key
from m1_ascend.finetune.recipe import LORA_TARGETS, RecipeError, apply_overrides, load_recipe, training_argument_fields

SHIPPED = sorted(RECIPES.glob("*.yaml"))


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def base_text() -> str:
    return TINY_RECIPE.read_text(encoding="utf-8")


def test_three_recipes_are_shipped() -> None:
    names = {p.name for p in SHIPPED}
    assert {"baichuan_m1_14b_lora_sft_910b_1card.yaml", "baichuan_m1_14b_lora_sft_910b_8cards.yaml",
            "tiny_lora_sft_cpu.yaml"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_recipe_uses_only_openmind_keys(path: Path) -> None:
    """openmind-cli train rejects unknown keys, so a shipped recipe may hold nothing else."""
    values = yaml.safe_load(path.read_text(encoding="utf-8"))
    foreign = [key for key in values if not is_openmind_key(key)]
    assert foreign == []
    recipe = load_recipe(path)
    assert recipe.get("stage") == "sft" and recipe.get("finetuning_type") == "lora"
    assert recipe.get("lora_target_modules") == ",".join(LORA_TARGETS)
    assert recipe.get("lr_scheduler_type") == "warmup_stable_decay"
    assert recipe.get("do_train") is True
    # Every training argument must also be accepted by the transformers installed here.
    assert set(recipe.training_arguments(training_argument_fields())) <= training_argument_fields()
    assert recipe.openmind_notes() == []  # nothing that would stop openmind-cli (no '~', trust_remote_code)


def test_shipped_dataset_info_is_in_openminds_form() -> None:
    """openMind passes local_path to its load_dataset as a directory, from the current directory, file_name in it."""
    info = json.loads((RECIPES / "data" / "dataset_info.json").read_text(encoding="utf-8"))
    recipe = load_recipe(TINY_RECIPE)
    assert recipe.get("custom_dataset_info") == "deploy/openmind/data/dataset_info.json"
    assert set(recipe.get("dataset").split(",")) == set(info)
    for entry in info.values():
        assert not Path(entry["local_path"]).is_absolute() and (REPO / entry["local_path"]).is_dir()
        assert (REPO / entry["local_path"] / entry["file_name"]).is_file()


def test_openmind_notes_name_what_openmind_cli_would_trip_on() -> None:
    recipe = load_recipe(TINY_RECIPE, ["model_name_or_path=~/demo", "trust_remote_code=false", "grad_skip_factor=4"])
    assert recipe.openmind_notes() == [
        "grad_skip_factor: m1-ascend-only keys; openmind-cli would reject them",
        "model_name_or_path: openmind-cli does not expand '~' (it would look the path up on its model hub or create "
        "a folder named '~'); write an absolute path",
        "trust_remote_code is not true: openmind-cli cannot load Baichuan-M1's code without it"]


def test_ascend_recipes_are_bf16_and_share_one_global_batch() -> None:
    one = load_recipe(RECIPES / "baichuan_m1_14b_lora_sft_910b_1card.yaml")
    eight = load_recipe(RECIPES / "baichuan_m1_14b_lora_sft_910b_8cards.yaml")
    for recipe in (one, eight):
        assert recipe.get("bf16") is True and not recipe.get("use_cpu")
        kwargs = recipe.get("lr_scheduler_kwargs")
        assert recipe.get("warmup_steps") + kwargs["num_stable_steps"] + kwargs["num_decay_steps"] == recipe.get("max_steps")
    batch = lambda r, cards: cards * r.get("per_device_train_batch_size") * r.get("gradient_accumulation_steps")  # noqa: E731
    assert batch(one, 1) == batch(eight, 8)


def test_schema_holds_openmind_and_transformers_445_keys() -> None:
    assert {"stage", "finetuning_type", "lora_rank", "lora_alpha", "lora_dropout", "lora_target_modules",
            "model_name_or_path", "dataset", "custom_dataset_info", "cutoff_len", "max_length"} <= set(OPENMIND_KEYS)
    # Keys transformers 5 dropped are still valid openMind keys (openMind pins transformers 4.45).
    assert {"warmup_ratio", "overwrite_output_dir", "output_dir", "lr_scheduler_kwargs"} <= TRAINING_ARGUMENTS_445
    assert "_n_gpu" not in TRAINING_ARGUMENTS_445 and "template" not in OPENMIND_KEYS


def test_unknown_key_names_line_and_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, base_text() + "lora_rnak: 8\n")
    line = len(base_text().splitlines()) + 1
    with pytest.raises(RecipeError) as err:
        load_recipe(path)
    message = str(err.value)
    assert f"recipe.yaml:{line}: 'lora_rnak'" in message
    assert "did you mean 'lora_rank'" in message


def test_unknown_key_from_set_is_rejected() -> None:
    with pytest.raises(RecipeError, match="'learning_rat' is not an openMind train key.*'learning_rate'"):
        load_recipe(TINY_RECIPE, ["learning_rat=1e-4"])


@pytest.mark.parametrize("override, match", [
    ("finetuning_type=full", "'finetuning_type' must be set to 'lora'"),
    ("stage=dpo", "'stage' must be 'sft'"),
    ("lora_rank=eight", "'lora_rank' must be int"),
    ("lora_target_modules=q_proj,o_proj", "q_proj are not LoRA targets"),
    ("lr_scheduler_kwargs={num_decay_steps: 5}", "needs num_stable_steps"),
    ("load_in_4bit=true", "QLoRA"),
    ("model_id=Baichuan/Baichuan-M1-14B", "model_id resolves through openMind's registry"),
    ("do_train=false", "'do_train' must be true"),
    ("grad_skip_factor=0.5", "must be > 1"),
])
def test_bad_values_are_rejected(override: str, match: str) -> None:
    with pytest.raises(RecipeError, match=match):
        load_recipe(TINY_RECIPE, [override])


def test_missing_finetuning_type_is_an_error_not_full(tmp_path: Path) -> None:
    text = "\n".join(line for line in base_text().splitlines() if not line.startswith("finetuning_type"))
    with pytest.raises(RecipeError, match="openMind's default is 'full'"):
        load_recipe(write(tmp_path, text))


def test_not_a_mapping_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="must be a YAML mapping"):
        load_recipe(write(tmp_path, "- a\n- b\n"))
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(write(tmp_path, "a: [1, 2\n"))
    with pytest.raises(RecipeError, match="not found"):
        load_recipe(tmp_path / "missing.yaml")


def test_overrides_parse_yaml_values_and_dotted_keys() -> None:
    recipe = load_recipe(TINY_RECIPE, ["max_steps=3", "bf16=false", "lr_scheduler_kwargs.num_decay_steps=1",
                                       "grad_skip_factor=4"])
    assert recipe.get("max_steps") == 3 and recipe.get("bf16") is False
    assert recipe.get("lr_scheduler_kwargs") == {"num_stable_steps": 20, "num_decay_steps": 1, "min_lr_ratio": 0.1}
    assert recipe.extension_keys() == ["grad_skip_factor"]
    with pytest.raises(RecipeError, match="expected key=value"):
        apply_overrides({}, ["max_steps"])
    with pytest.raises(RecipeError, match="'max_steps' is not a mapping"):
        apply_overrides({"max_steps": 3}, ["max_steps.x=1"])


def test_transformers_445_only_keys_are_translated() -> None:
    recipe = load_recipe(TINY_RECIPE, ["warmup_steps=0", "warmup_ratio=0.1", "save_safetensors=true"])
    kwargs = recipe.training_arguments(training_argument_fields())
    assert kwargs["warmup_steps"] == pytest.approx(0.1)
    assert "overwrite_output_dir" not in kwargs and "save_safetensors" not in kwargs
    assert kwargs["lr_scheduler_kwargs"]["num_decay_steps"] == 7
    assert not any(key in kwargs for key in OPENMIND_KEYS)
