"""The MindIE stand-in holds to the real tree: module paths, class names, bases and signatures.

``tests/mindie_standin/manifest.json`` was recorded from Ascend/MindIE-LLM at 8b4871a (master =
v3.0.0) by ``mindie_standin/record_manifest.py``. Every module under ``mindie_standin/mindie_llm``
must be a recorded module and every recorded module must be mirrored; in each, every recorded
class and function must exist with the recorded bases, methods, method kinds, dataclass fields and
parameters (names, kinds, defaults), and nothing the stand-in defines may be missing from the record
-- except what is listed below, each with the reason. When the mirror of the real repository is on
this machine, the manifest itself is re-recorded and compared.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import json
import os
import typing
from enum import Enum
from functools import cached_property
from pathlib import Path
from typing import Any

import pytest
from mindie_standin import record_manifest
from mindie_standin.fixtures import STANDIN, make_mindie_tree, mindie_importable

MANIFEST = json.loads((STANDIN.parent / "manifest.json").read_text())
RECORDED = {entry["module"]: entry for entry in MANIFEST["modules"]}
MIRROR = Path(os.environ.get("MINDIE_LLM_REPO", "/work/.mirror/Ascend+MindIE-LLM/repo"))

# Stand-in modules with no MindIE counterpart.
STANDIN_ONLY_MODULES = {"mindie_llm._standin"}  # the emulated device namespace and resetting process state
# Recorded symbols ("Name" or "Class.method") the stand-in leaves out, and why.
OMITTED = {
    "mindie_llm.runtime.config.configuration_utils": {
        "LLMConfig.__repr__": "pretty printing of the feature config",
    },
    "mindie_llm.text_generator.adapter.generator_backend": {
        "GeneratorBackend.__parse_config_key": "MindIE's typed parsing of the service config",
        "GeneratorBackend._execute_cmd_pause_engine": "fault recovery",
        "GeneratorBackend._execute_cmd_reinit_npu": "fault recovery",
        "GeneratorBackend._wait_for_force_stop_exception": "fault recovery",
        "GeneratorBackend._handle_uce_error": "fault recovery",
        "GeneratorBackend._check_and_recover_uce_in_kvcache": "fault recovery",
    },
    "mindie_llm.text_generator.adapter.generator_aclgraph": {
        f"GeneratorAclGraph.{name}": "data/context-parallel input partitioning (raises 'not modelled' where MindIE branches)"
        for name in ("_dp_partition_data", "_generate_lm_head_for_cp", "_cp_partition_data", "_cp_update_context_length",
                     "_update_lm_head_indices", "_update_token_size_per_dp_group", "_update_lm_head_indices_dp_rank_ids",
                     "_update_qlen_and_mask_dp_data", "_update_hidden_states_dp_data",
                     "_update_shard_effective_token_indices", "_get_dp_ep_padding_inputs", "_get_dp_ep_inputs",
                     "_partition_data", "_gather_dp_data", "_lm_head_local_dp_calc")
    },
    "mindie_llm.text_generator.generator": {
        "Generator.__del__": "finalising the PD-separation worker",
        "Generator._temporarily_disable": "DAP / async inference / mempool toggles around warm-up",
        "Generator._init_plugin_manager": "plugins (prefix cache, MTP, splitfuse)",
        "Generator._update_request_for_prefix_cache": "prefix-cache warm-up",
    },
}
# Stand-in helpers (private, no MindIE counterpart), by module: "Name" or "Class.method".
HELPERS = {
    "mindie_llm.runtime.config.huggingface_config": {"_bounds", "_check_fields", "_check_token_ids"},
    "mindie_llm.runtime.models.base.router": {"_LLMConfigValidator"},
    "mindie_llm.runtime.model_runner.forward_context_exp": {"_metadata_cls"},
    "mindie_llm.runtime.utils.distributed.parallel_info_manager": {"ParallelInfoManager._info"},
    "mindie_llm.utils.env": {"_env_int", "_visible_devices"},
    "mindie_llm.text_generator.generator": {"_TGSequence", "_compose_model_inputs"},
}
ROUTER_DECORATOR = "auto_speculative_method_router(selector_fn=speculative_worker_selector)"


def standin_modules() -> set[str]:
    names = set()
    for path in STANDIN.rglob("*.py"):
        parts = path.relative_to(STANDIN.parent).with_suffix("").parts
        names.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> typing.Iterator[None]:
    with mindie_importable(make_mindie_tree(tmp_path_factory.mktemp("mindie"))):
        yield


def parameters(text: str) -> list[tuple[str, str, str | None]]:
    """(name, kind, default source) of a recorded signature such as ``(self, a, b=1, *args, c=2, **kw)``."""
    fn = ast.parse(f"def f{text.replace('<factory>', '__factory__')}: pass").body[0]
    args = fn.args
    positional = args.posonlyargs + args.args
    defaults = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    out = [(a.arg, "POSITIONAL_OR_KEYWORD", d) for a, d in zip(positional, defaults, strict=True)]
    if args.vararg:
        out.append((args.vararg.arg, "VAR_POSITIONAL", None))
    out += [(a.arg, "KEYWORD_ONLY", d) for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True)]
    if args.kwarg:
        out.append((args.kwarg.arg, "VAR_KEYWORD", None))
    return [(name, kind, None if d is None else ast.unparse(d)) for name, kind, d in out]


def same_default(recorded: str | None, actual: Any, namespace: dict[str, Any]) -> bool:
    """A recorded default (source text) against the stand-in's value: literals by value, names evaluated there."""
    if recorded is None:
        return actual is inspect.Parameter.empty
    if recorded == "__factory__":
        return repr(actual) == "<factory>"
    try:
        expected = ast.literal_eval(recorded)
    except ValueError:
        expected = eval(recorded, dict(namespace))  # e.g. DEFAULT_BUFFER_SIZE, transformers.utils.SAFE_WEIGHTS_INDEX_NAME
    return type(expected) is type(actual) and expected == actual


def check_signature(where: str, recorded: str, function: Any, namespace: dict[str, Any]) -> list[str]:
    actual = [(p.name, p.kind.name, p.default) for p in inspect.signature(function).parameters.values()]
    expected = parameters(recorded)
    if [a[:2] for a in actual] != [e[:2] for e in expected]:
        return [f"{where}: parameters {[a[:2] for a in actual]} != recorded {recorded}"]
    return [f"{where}: default of {e[0]} is {a[2]!r}, recorded {e[2]}" for a, e in zip(actual, expected, strict=True)
            if not same_default(e[2], a[2], namespace)]


def same_bases(cls: type, recorded: list[str], namespace: dict[str, Any]) -> bool:
    """The recorded base expressions, evaluated where the stand-in class is defined, are its bases (generics unwrapped)."""
    actual = [typing.get_origin(b) or b for b in cls.__dict__.get("__orig_bases__", cls.__bases__) if b is not object]
    try:
        expected = [eval(text.split("[")[0], dict(namespace)) for text in recorded]
    except NameError:
        return False
    return len(actual) == len(expected) and all(a is e for a, e in zip(actual, expected, strict=True))


def defined_here(function: Any, cls: type) -> bool:
    """A function written in the stand-in's class body (not one dataclass/namedtuple/Enum generated)."""
    code = getattr(inspect.unwrap(function), "__code__", None)
    return code is not None and code.co_filename == inspect.getsourcefile(cls)


def own_members(cls: type) -> dict[str, Any]:
    members = {}
    for name, raw in cls.__dict__.items():
        function = raw.__func__ if isinstance(raw, (staticmethod, classmethod)) else raw
        if isinstance(raw, (property, cached_property)):
            members[name] = raw
        elif inspect.isfunction(function) and defined_here(function, cls):
            members[name] = raw
    return members


def check_class(module: Any, name: str, recorded: dict[str, Any], omitted: dict[str, str], helpers: set[str]) -> list[str]:
    problems = []
    obj = getattr(module, name)
    cls = obj
    if ROUTER_DECORATOR in recorded.get("decorators", []):
        if not (inspect.isfunction(obj) and inspect.isclass(getattr(obj, "__wrapped__", None))):
            return [f"{name}: should be the factory auto_speculative_method_router makes (with __wrapped__)"]
        cls = obj.__wrapped__
        problems += [f"{name}: class attribute {a} not copied onto the factory" for a in recorded.get("class_attributes", {})
                     if not hasattr(obj, a)]
    if not inspect.isclass(cls):
        return [f"{name}: recorded as a class"]
    if not same_bases(cls, recorded["bases"], vars(module)):
        problems.append(f"{name}: bases {cls.__bases__} are not the recorded {recorded['bases']}")
    if ("dataclass" in recorded.get("decorators", [])) != ("__dataclass_params__" in cls.__dict__):
        problems.append(f"{name}: dataclass or not, unlike the record")
    kinds = recorded.get("method_kinds", {})
    members = own_members(cls)
    expected = {m for m in [*recorded["methods"], *kinds] if f"{name}.{m}" not in omitted}
    generated = {m for m in expected if kinds.get(m, "").endswith("-generated")}
    if extra := set(members) - expected - {m.split(".")[1] for m in helpers if m.startswith(f"{name}.")}:
        problems.append(f"{name}: methods not in the record: {sorted(extra)}")
    if missing := expected - generated - set(members):
        problems.append(f"{name}: recorded methods missing: {sorted(missing)}")
    namespace = vars(module)
    for method in sorted(expected - set(kinds) | {m for m, k in kinds.items() if m in expected and "property" not in k}):
        raw = cls.__dict__.get(method)
        if raw is None:
            continue
        kind = kinds.get(method, "method")
        function = getattr(cls, method) if kind.startswith("classmethod") else getattr(raw, "__func__", raw)
        problems += check_signature(f"{name}.{method}", recorded["methods"][method], function, namespace)
        if kind.startswith(("staticmethod", "classmethod")) and not isinstance(raw, (staticmethod, classmethod)):
            problems.append(f"{name}.{method}: recorded as a {kind}")
        if kind.endswith("+abstract") and not getattr(function, "__isabstractmethod__", False):
            problems.append(f"{name}.{method}: recorded as abstract")
    for method, kind in kinds.items():
        wanted = {"property": property, "cached_property": cached_property}.get(kind)
        if wanted is not None and not isinstance(cls.__dict__.get(method), wanted):
            problems.append(f"{name}.{method}: recorded as a {kind}")
    if "fields" in recorded and dataclasses.is_dataclass(cls):
        ours = {k.__name__ for k in cls.__mro__ if k.__module__.startswith("mindie_llm")}
        mine = [f for f in dataclasses.fields(cls)
                if any(f.name in vars(k).get("__annotations__", {}) for k in cls.__mro__ if k.__name__ in ours)]
        if [f.name for f in mine] != list(recorded["fields"]):
            problems.append(f"{name}: fields {[f.name for f in mine]} != recorded {list(recorded['fields'])}")
        for f in mine:
            text = recorded["fields"].get(f.name, "")
            default = text.split(" = ", 1)[1] if " = " in text else None
            if f.default_factory is not dataclasses.MISSING:
                same = default == "<factory>"
            elif f.default is dataclasses.MISSING:
                same = default is None
            else:
                same = default not in (None, "<factory>") and same_default(default, f.default, namespace)
            if not same:
                problems.append(f"{name}.{f.name}: default differs from the recorded {default}")
    for attribute, text in recorded.get("class_attributes", {}).items():
        value = cls.__members__[attribute].value if issubclass(cls, Enum) and attribute in cls.__members__ else \
            cls.__dict__.get(attribute, dataclasses.MISSING)
        if value is dataclasses.MISSING:
            problems.append(f"{name}.{attribute}: recorded class attribute missing")
        elif len(text) == 200:  # the recorder keeps 200 characters of long values
            problems += [] if repr(value).startswith(text) else [f"{name}.{attribute}: {value!r} != recorded {text}"]
        else:
            try:
                literal = ast.literal_eval(text)
            except ValueError:
                continue  # e.g. Lock(): presence is all a source text can tell
            if isinstance(literal, (dict, list, set)) and attribute != "__slots__":
                literal, value = type(literal), type(value)  # a mutable registry: only its initial type is recorded
            if literal != value:
                problems.append(f"{name}.{attribute}: {value!r} != recorded {text}")
    return problems


def test_every_standin_module_is_recorded_and_every_recorded_module_is_mirrored():
    assert MANIFEST["commit"] == record_manifest.COMMIT
    assert standin_modules() - STANDIN_ONLY_MODULES == set(RECORDED)


@pytest.mark.parametrize("module_name", sorted(RECORDED))
def test_module_matches_the_record(tree: None, module_name: str):
    recorded = RECORDED[module_name]
    module = importlib.import_module(module_name)
    omitted, helpers = OMITTED.get(module_name, {}), HELPERS.get(module_name, set())
    problems = []
    defined = {name for name, obj in vars(module).items()
               if (inspect.isclass(obj) or inspect.isfunction(obj)) and obj.__module__ == module_name}
    if extra := defined - set(recorded["symbols"]) - helpers:
        problems.append(f"defined but not recorded: {sorted(extra)}")
    if missing := set(recorded["symbols"]) - defined - set(omitted):
        problems.append(f"recorded but missing: {sorted(missing)}")
    for name, entry in recorded["symbols"].items():
        if name not in defined:
            continue
        if isinstance(entry, dict):
            problems += check_class(module, name, entry, omitted, helpers)
        else:
            function = getattr(module, name)
            problems += check_signature(name, entry, function, vars(module))
            if "contextmanager" in recorded.get("function_decorators", {}).get(name, []) and \
                    not hasattr(function, "__wrapped__"):
                problems.append(f"{name}: recorded as a contextmanager")
    for name, variable in recorded.get("variables", {}).items():
        if not hasattr(module, name):
            problems.append(f"module variable {name} missing")
            continue
        try:
            literal = ast.literal_eval(variable["value"])
        except ValueError:
            continue
        if getattr(module, name) != literal:
            problems.append(f"module variable {name} = {getattr(module, name)!r}, recorded {variable['value']}")
    assert not problems, "\n".join(problems)


def test_omissions_and_helpers_name_real_gaps():
    """The exception lists may not hide drift: each omission is recorded, each helper is not."""
    for module_name, names in OMITTED.items():
        symbols = RECORDED[module_name]["symbols"]
        for name in names:
            cls, _, method = name.partition(".")
            assert cls in symbols and (not method or method in symbols[cls]["methods"]), name
    for module_name, names in HELPERS.items():
        symbols = RECORDED[module_name]["symbols"]
        for name in names:
            cls, _, method = name.partition(".")
            assert (method and method not in symbols[cls]["methods"]) or (not method and name not in symbols), name


def test_dev_forward_context_adds_exactly_devs_proxies(tmp_path: Path):
    """master's forward_context has no getter/setter; fixtures' dev variant adds the two dev added, lazily."""
    added = RECORDED["mindie_llm.runtime.model_runner.forward_context"]["compare_commit_symbols"]["added"]
    with mindie_importable(make_mindie_tree(tmp_path / "master")):
        from mindie_llm.runtime.model_runner import forward_context

        assert not set(added) & set(vars(forward_context))
        with pytest.raises(ImportError):
            exec("from mindie_llm.runtime.model_runner.forward_context import get_forward_context", {})
    with mindie_importable(make_mindie_tree(tmp_path / "dev", forward_context="dev")):
        from mindie_llm.runtime.model_runner import forward_context, forward_context_exp

        for name, signature in added.items():
            assert check_signature(name, signature, getattr(forward_context, name), vars(forward_context)) == []
        context = forward_context_exp.ForwardContext(is_prefill=False)
        forward_context.set_forward_context(context)
        assert forward_context_exp.get_forward_context() is context is forward_context.get_forward_context()


@pytest.mark.skipif(not (MIRROR / "HEAD").exists(), reason="no mirror of Ascend/MindIE-LLM on this machine")
def test_manifest_is_what_the_real_tree_says():
    assert record_manifest.record(str(MIRROR)) == MANIFEST
