"""``m1-ascend openmind-register``: the baichuan_m1 group and template go into openMind's files and come out again.

An openMind install is a stand-in here: the files registration reads and writes, laid out and
shaped like openMind 1.0.0's (``flow/configs/models.json`` and ``templates.json``, the code that
reads them, the dist-info). The slow test registers into the real openMind and trains with it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from m1_ascend.cli import main
from m1_ascend.finetune.openmind_register import (
    GROUP_NAME,
    MANIFEST,
    RegisterError,
    group_entry,
    locate_openmind,
    register,
    status,
    uninstall,
)
from m1_ascend.finetune.openmind_template import DEFAULT_SYSTEM_PROMPT, OPENMIND_TEMPLATE
from m1_ascend.tokenizer import M1Tokenizer

QWEN_GROUP = {"models": {"Qwen2-7B": {"modelers": "AI-Research/Qwen2-7B"}}, "lora_target": "q_proj, k_proj",
              "template": "qwen"}
QWEN_TEMPLATE = {"name": "qwen", "system_template": "<|im_start|>system\n{content}<|im_end|>\n",
                 "user_template": "<|im_start|>user\n{content}<|im_end|>\n<|im_start|>assistant\n",
                 "assistant_template": "{content}", "separator_template": "{content}\n",
                 "default_system": "You are a helpful assistant."}


def fake_openmind(root: Path, version: str = "1.0.0") -> Path:
    """``<root>/lib/python3.11/site-packages/openmind`` with what registration touches."""
    site = root / "lib" / "python3.11" / "site-packages"
    package = site / "openmind"
    (package / "flow" / "configs").mkdir(parents=True)
    (package / "flow" / "model").mkdir()
    (package / "flow" / "datasets").mkdir()
    (package / "__init__.py").write_text("")
    (package / "flow" / "configs" / "models.json").write_text(json.dumps({"qwen2": QWEN_GROUP}, indent=4))
    (package / "flow" / "configs" / "templates.json").write_text(json.dumps([QWEN_TEMPLATE], indent=4))
    (package / "flow" / "model" / "model_registry.py").write_text(
        'path = "configs/models.json"\nregister_model_group(name, item["models"], item.get("lora_target"), '
        'item.get("template"))\n')
    (package / "flow" / "datasets" / "template.py").write_text(
        'path = "configs/templates.json"\nfor key in ("system_template", "separator_template", "default_system"): pass\n')
    (site / f"openmind-{version}.dist-info").mkdir()
    (site / f"openmind-{version}.dist-info" / "METADATA").write_text(f"Name: openmind\nVersion: {version}\n")
    return package


def read(package: Path) -> tuple[dict, list]:
    configs = package / "flow" / "configs"
    return (json.loads((configs / "models.json").read_text()), json.loads((configs / "templates.json").read_text()))


def test_register_then_uninstall_leaves_openmind_as_it_was(tmp_path: Path) -> None:
    package = fake_openmind(tmp_path)
    (package / "flow" / "configs" / "models.json").chmod(0o640)
    before = read(package)
    install = locate_openmind(package)
    assert (install.version, install.problems) == ("1.0.0", [])
    register(install)
    models, templates = read(package)
    assert models == {"qwen2": QWEN_GROUP, GROUP_NAME: group_entry()}
    assert models[GROUP_NAME]["lora_target"] == "W_pack,o_proj,gate_proj,up_proj,down_proj"
    assert templates == [QWEN_TEMPLATE, OPENMIND_TEMPLATE]
    assert (package / "flow" / "configs" / "models.json").stat().st_mode & 0o777 == 0o640
    assert status(install)[2:] == ["model group 'baichuan_m1': registered by m1-ascend 0.1.0",
                                   "template 'baichuan_m1': registered by m1-ascend 0.1.0"]
    register(install)  # again: our own entries are updated in place
    assert read(package) == (models, templates)
    uninstall(install)
    assert read(package) == before
    assert not (package / "flow" / "configs" / MANIFEST).exists()
    assert status(install)[2:] == ["model group 'baichuan_m1': not registered", "template 'baichuan_m1': not registered"]
    with pytest.raises(RegisterError, match="not registered"):
        uninstall(install)


@pytest.mark.parametrize("foreign", ["group", "template"])
def test_entries_that_are_not_ours_are_never_overwritten(tmp_path: Path, foreign: str) -> None:
    package = fake_openmind(tmp_path)
    models, templates = read(package)
    if foreign == "group":
        models[GROUP_NAME] = {"models": {}, "lora_target": "W_pack", "template": "theirs"}
    else:
        templates.append({**OPENMIND_TEMPLATE, "default_system": "Another prompt."})
    (package / "flow" / "configs" / "models.json").write_text(json.dumps(models))
    (package / "flow" / "configs" / "templates.json").write_text(json.dumps(templates))
    install = locate_openmind(package)
    with pytest.raises(RegisterError, match="that m1-ascend did not write"):
        register(install)
    assert read(package) == (models, templates)
    assert "present but not written by m1-ascend" in "\n".join(status(install))


def test_changed_entries_are_not_removed_and_a_reinstall_is_noticed(tmp_path: Path) -> None:
    package = fake_openmind(tmp_path)
    pristine = read(package)
    install = locate_openmind(package)
    register(install)
    models, templates = read(package)
    models[GROUP_NAME]["lora_target"] = "W_pack"  # someone edited our group by hand
    (package / "flow" / "configs" / "models.json").write_text(json.dumps(models))
    with pytest.raises(RegisterError, match="was changed after m1-ascend registered it"):
        uninstall(install)
    with pytest.raises(RegisterError, match="did not write"):
        register(install)

    # pip reinstalled openMind: pristine files, our manifest left behind
    (package / "flow" / "configs" / "models.json").write_text(json.dumps(pristine[0]))
    (package / "flow" / "configs" / "templates.json").write_text(json.dumps(pristine[1]))
    assert "missing: openMind was reinstalled" in "\n".join(status(install))
    register(install)
    assert GROUP_NAME in read(package)[0]


def test_openmind_is_recognised_by_its_layout(tmp_path: Path) -> None:
    package = fake_openmind(tmp_path / "venv", version="1.1.0")
    site = package.parent
    for root in (package, site, tmp_path / "venv"):
        assert locate_openmind(root).package_dir == package
    assert "not checked (checked: 1.0.0)" in status(locate_openmind(package))[0]
    with pytest.raises(RegisterError, match="no openMind under"):
        locate_openmind(tmp_path)
    (package / "flow" / "configs" / "templates.json").write_text(json.dumps({"qwen": QWEN_TEMPLATE}))
    (package / "flow" / "datasets" / "template.py").write_text("# reads nothing\n")
    install = locate_openmind(package)
    assert install.problems == ["flow/datasets/template.py does not read configs/templates.json, system_template, "
                                "separator_template, default_system",
                                f"{package / 'flow/configs'}: models.json is not an object or templates.json is not a list"]
    with pytest.raises(RegisterError, match="laid out differently"):
        register(install)
    assert status(install)[1].startswith("layout: differs")


def test_the_template_renders_our_chat_layout(tokenizer_dir: Path) -> None:
    """openMind's pieces (system, each question, each answer, separators) give the tokenizer's own rendering."""
    tokenizer = M1Tokenizer.from_pretrained(tokenizer_dir)
    chat = [{"role": "system", "content": DEFAULT_SYSTEM_PROMPT}, {"role": "user", "content": "I have a headache."},
            {"role": "assistant", "content": "Since when?"}, {"role": "user", "content": "This morning."},
            {"role": "assistant", "content": "Rest and drink water."}]
    t = OPENMIND_TEMPLATE
    text = t["system_template"].format_map({"content": t["default_system"]})
    for i, message in enumerate(chat[1:]):
        if i and i % 2 == 0:
            text += t["separator_template"].format_map(message)
        text += t["user_template" if message["role"] == "user" else "assistant_template"].format_map(message)
    assert text == tokenizer.render_chat(chat, add_generation_prompt=False)


def test_cli_register_status_uninstall(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    package = fake_openmind(tmp_path)
    root = ["--openmind-root", str(tmp_path)]
    assert main(["openmind-register", *root]) == 0
    assert f"registered Baichuan-M1 with openMind 1.0.0 at {package}" in capsys.readouterr().out
    assert main(["openmind-register", *root, "--status"]) == 0
    assert "model group 'baichuan_m1': registered by m1-ascend" in capsys.readouterr().out
    assert main(["openmind-register", *root, "--uninstall"]) == 0
    assert "removed the baichuan_m1 model group and template" in capsys.readouterr().out
    assert main(["openmind-register", "--openmind-root", str(tmp_path / "nowhere")]) == 1
    assert capsys.readouterr().err == f"m1-ascend openmind-register: error: --openmind-root {tmp_path / 'nowhere'} " \
                                      "is not a directory\n"
