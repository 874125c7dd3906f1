"""``m1-ascend mindie-adapter``: installing into a MindIE-like tree, MindIE's discovery of the
installed copy, permissions, refusals, and an uninstall that touches nothing of MindIE's."""

from __future__ import annotations

import importlib
import json
import shutil
import stat
import sys
from pathlib import Path

import pytest
from mindie_standin.fixtures import make_mindie_tree, mindie_importable

from m1_ascend.cli import main
from m1_ascend.mindie_adapter import install
from m1_ascend.tokenizer import M1Tokenizer

SHIM_FILES = {"__init__.py", "router_baichuan_m1.py", "config_baichuan_m1.py", "baichuan_m1.py",
              "input_builder_baichuan_m1.py"}


@pytest.fixture
def site(tmp_path: Path) -> Path:
    return make_mindie_tree(tmp_path)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_install_writes_shims_with_mindie_permissions(site: Path):
    mindie = install.locate_mindie(site)
    assert (mindie.version, mindie.refusal()) == ("3.0.0", None)
    install.install(mindie)
    target = site / "mindie_llm/runtime/models/baichuan_m1"
    assert {p.name for p in target.iterdir()} == SHIM_FILES | {install.MANIFEST}
    assert mode(target) == 0o750
    assert {mode(p) for p in target.iterdir()} == {0o640}
    manifest = json.loads((target / install.MANIFEST).read_text())
    assert set(manifest["files"]) == SHIM_FILES and manifest["mindie_version"] == "3.0.0"
    assert "from m1_ascend.mindie_adapter.router import BaichuanM1Router" in (target / "router_baichuan_m1.py").read_text()


def test_shims_say_how_to_fix_a_python_without_m1_ascend(site: Path, monkeypatch):
    install.install(install.locate_mindie(site))
    monkeypatch.setitem(sys.modules, "m1_ascend.mindie_adapter", None)  # as if m1-ascend were not installed there
    with mindie_importable(site), pytest.raises(ImportError, match="needs the m1-ascend package in MindIE's Python"):
        importlib.import_module("mindie_llm.runtime.models.baichuan_m1.router_baichuan_m1")


def test_mindie_discovers_the_installed_adapter(site: Path, tiny_model_dir: Path):
    """MindIE's rule: folder = model_type, router_<type>.py, <Type>Router, then config/model by name."""
    install.install(install.locate_mindie(site))
    with mindie_importable(site):
        from mindie_llm.runtime.config.load_config import LoadConfig
        from mindie_llm.runtime.models import get_router_ins

        router = get_router_ins(LoadConfig(model_name_or_path=str(tiny_model_dir), load_tokenizer=False))
        assert type(router).__name__ == "BaichuanM1Router"
        assert type(router).__module__ == "m1_ascend.mindie_adapter.router"
        assert router.model_cls.__name__ == "BaichuanM1ForCausalLM"
        assert router.model_cls.__module__ == "m1_ascend.mindie_adapter.model"
        config = router.config  # the cache MindIE allocates: widest layer, plus the conv-state layer
        assert type(config).__name__ == "BaichuanM1Config"
        assert (config.num_hidden_layers, config.num_key_value_heads, config.head_dim) == (5, 1, 32)
        assert config.rope_scaling.factor == 1.0 and config.max_position_embeddings == 512


def test_input_builder_renders_baichuan_turns(site: Path, tiny_model_dir: Path):
    install.install(install.locate_mindie(site))
    tokenizer = M1Tokenizer.from_pretrained(tiny_model_dir)
    conversation = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is a fever?"}]
    with mindie_importable(site):
        from mindie_llm.runtime.config.load_config import LoadConfig
        from mindie_llm.runtime.models import get_router_ins

        # MindIE's text tokenizer (make_context decodes for its log): this package's transformers class.
        router = get_router_ins(LoadConfig(model_name_or_path=str(tiny_model_dir)))
        assert type(router.tokenizer).__name__ == "BaichuanM1Tokenizer" and not router.load_config.trust_remote_code
        ids = router.input_builder.make_context(0, conversation)
    roles = tokenizer.role_token_ids
    assert ids == ([roles["<B_SYS>"]] + tokenizer.encode("Be brief.") + [roles["<C_Q>"]]
                   + tokenizer.encode("What is a fever?") + [roles["<C_A>"]])


@pytest.mark.parametrize("version", ["3.0.0", "2.3.0", "1.0.0", None])
def test_every_release_with_the_torch_runtime_is_accepted_whatever_it_calls_itself(tmp_path: Path, version: str | None):
    """The v3.0.0 tree reports 2.3.0 (README), 3.0.0 (release builds) or 1.0.0 (a wheel built plainly)."""
    mindie = install.locate_mindie(make_mindie_tree(tmp_path, version=version))
    assert (mindie.version, mindie.refusal()) == (version, None)
    install.install(mindie)
    assert mindie.target_dir.is_dir()


def test_refuses_missing_mindie_or_one_without_the_torch_runtime(tmp_path: Path):
    with pytest.raises(install.InstallError, match="no MindIE-LLM under"):
        install.locate_mindie(tmp_path)
    # A tree before the torch runtime drove ModelRunnerExp (3.0.0.beta.2: generator.py lacks the switch).
    beta = make_mindie_tree(tmp_path / "beta", version="3.0.0b2", without=["text_generator/generator.py"])
    with pytest.raises(install.InstallError,
                       match=r"MindIE-LLM 3\.0\.0b2 .* lacks the torch runtime .*generator\.py \(ENV\.model_runner_exp = True\)"):
        install.install(install.locate_mindie(beta))
    no_graphs = make_mindie_tree(tmp_path / "no_graphs", without=["runtime/compilation/aclgraph_backend.py"])
    with pytest.raises(install.InstallError, match=r"aclgraph_backend\.py \(class AclGraphBackend\)"):
        install.install(install.locate_mindie(no_graphs))
    changed = make_mindie_tree(tmp_path / "changed")
    (changed / "mindie_llm/runtime/config/huggingface_config.py").write_text("class HuggingFaceConfig: ...\n")
    with pytest.raises(install.InstallError, match=r"huggingface_config\.py \(class BaseRopeScaling\)"):
        install.install(install.locate_mindie(changed))
    for tree in (beta, no_graphs, changed):
        assert not (tree / "mindie_llm/runtime/models/baichuan_m1").exists()


def test_never_overwrites_a_baichuan_m1_folder_it_did_not_write(site: Path):
    theirs = site / "mindie_llm/runtime/models/baichuan_m1"
    theirs.mkdir()
    (theirs / "router_baichuan_m1.py").write_text("# MindIE's own\n")
    with pytest.raises(install.InstallError, match="was not installed by m1-ascend"):
        install.install(install.locate_mindie(site))
    assert (theirs / "router_baichuan_m1.py").read_text() == "# MindIE's own\n"
    assert [p.name for p in theirs.iterdir()] == ["router_baichuan_m1.py"]


def test_uninstall_removes_only_what_install_wrote(site: Path):
    mindie = install.locate_mindie(site)
    before = sorted(p.relative_to(site) for p in site.rglob("*"))
    install.install(mindie)
    install.install(mindie)  # re-install over our own files is an upgrade, not a conflict
    target = mindie.target_dir
    (target / "__pycache__").mkdir()
    (target / "__pycache__/router_baichuan_m1.cpython-311.pyc").write_bytes(b"bytecode")
    (target / "notes.txt").write_text("someone else's file\n")
    install.uninstall(mindie)
    assert sorted(p.name for p in target.iterdir()) == ["notes.txt"]  # theirs stays, and so does the folder
    (target / "notes.txt").unlink()
    target.rmdir()
    assert sorted(p.relative_to(site) for p in site.rglob("*")) == before


def test_changed_files_block_uninstall_and_show_in_status(site: Path):
    mindie = install.locate_mindie(site)
    install.install(mindie)
    assert "adapter: installed by m1-ascend" in "\n".join(install.status(mindie))
    shim = mindie.target_dir / "baichuan_m1.py"
    shim.write_text(shim.read_text() + "# local patch\n")
    with pytest.raises(install.InstallError, match="was changed after m1-ascend installed it"):
        install.uninstall(mindie)
    assert "baichuan_m1.py: modified since install" in install.status(mindie)[-1]
    assert shim.exists()


def test_finds_a_run_package_layout_and_its_version_info(tmp_path: Path):
    nested = make_mindie_tree(tmp_path / "mindie/latest/mindie-llm/lib/python3.11", version=None)
    (tmp_path / "mindie/latest/version.info").write_text("Ascend-mindie : 2.3.0\n")
    mindie = install.locate_mindie(tmp_path / "mindie/latest")
    assert mindie.package_dir == (nested / "mindie_llm").resolve()
    assert (mindie.version, mindie.refusal()) == ("2.3.0", None)


def test_cli_install_status_uninstall(site: Path, capsys):
    assert main(["mindie-adapter", "install", "--mindie-root", str(site)]) == 0
    assert "installed Baichuan-M1 into MindIE-LLM 3.0.0 (torch runtime found)" in capsys.readouterr().out
    assert main(["mindie-adapter", "status", "--mindie-root", str(site)]) == 0
    assert "supported: yes" in capsys.readouterr().out
    assert main(["mindie-adapter", "uninstall", "--mindie-root", str(site)]) == 0
    assert main(["mindie-adapter", "uninstall", "--mindie-root", str(site)]) == 1
    target = site / "mindie_llm/runtime/models/baichuan_m1"
    assert capsys.readouterr().err.strip() == f"m1-ascend mindie-adapter: error: no m1-ascend install at {target}"


def test_mindie_config_backend_torch_selects_the_adapter(tiny_model_dir: Path, tmp_path: Path):
    from m1_ascend.mindie.generator import GenerationError, ServiceOptions, build_config

    weights = shutil.copytree(tiny_model_dir, tmp_path / "weights")
    config = json.loads((weights / "config.json").read_text())
    (weights / "config.json").write_text(json.dumps({**config, "torch_dtype": config["dtype"]}))  # MindIE's spelling
    generated = build_config(ServiceOptions(model_path=weights, npus=[0, 1], tensor_parallel=1, backend="torch"))
    backend = generated.config.BackendConfig
    [model] = backend.ModelDeployConfig.ModelConfig
    assert (model.backendType, model.worldSize, backend.npuDeviceIds) == ("torch", 1, [[0], [1]])
    with pytest.raises(GenerationError, match="runs one NPU per instance, not 2"):
        build_config(ServiceOptions(model_path=weights, npus=[0, 1], tensor_parallel=2, backend="torch"))
