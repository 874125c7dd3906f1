"""Record module paths, classes, bases and signatures from a MindIE-LLM git snapshot (read, never imported).

Usage: ``python tests/mindie_standin/record_manifest.py <bare-git-dir> [<commit> [<compare-commit>]]
> tests/mindie_standin/manifest.json``. Without commits it records ``COMMIT`` against ``DEV``.

The stand-in under ``mindie_llm/`` mirrors exactly the modules listed in ``MODULES``;
``tests/test_mindie_standin_manifest.py`` holds it to the recorded names, bases and signatures.
Signatures read like ``inspect.signature`` of the attribute as reached on its class: instance
methods keep ``self``, classmethods drop ``cls``, staticmethods are as written; annotations are
dropped and defaults kept as source text. A dataclass without an explicit ``__init__`` gets the
generated one (inherited fields first; ``field(default_factory=...)`` shows as ``<factory>``).
Adapted from the colleague's /work/notes/mindie/tools/extract_manifest.py (same output format),
with the module list widened to every module the stand-in mirrors.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from typing import Any

REPO = "Ascend/MindIE-LLM"
COMMIT = "8b4871ad31f592aa863f6255760e4934484d78e4"  # master = branch v3.0.0, 2026-04-23
DEV = "be3078455fb7ab8b86656636ddf199566adecad1"  # dev, 2026-04-25
RECORDED_ON = "2026-11-30"

_PACKAGES = [
    "mindie_llm", "mindie_llm/runtime", "mindie_llm/runtime/config", "mindie_llm/runtime/compilation",
    "mindie_llm/runtime/layers", "mindie_llm/runtime/model_runner", "mindie_llm/runtime/model_runner/forward_metadata",
    "mindie_llm/runtime/models/base", "mindie_llm/runtime/utils", "mindie_llm/runtime/utils/loader",
    "mindie_llm/modeling", "mindie_llm/modeling/model_wrapper/aclgraph", "mindie_llm/text_generator",
    "mindie_llm/text_generator/adapter/torch_utils", "mindie_llm/text_generator/utils", "mindie_llm/utils",
    "mindie_llm/utils/log",
]
MODULES = [f"{package}/__init__.py" for package in _PACKAGES] + [
    # weight loading
    "mindie_llm/runtime/utils/loader/default_model_loader.py",
    "mindie_llm/runtime/utils/loader/weight_utils.py",
    # runner, forward context, metadata, static buffers
    "mindie_llm/runtime/model_runner/model_runner_exp.py",
    "mindie_llm/runtime/model_runner/forward_context_exp.py",
    "mindie_llm/runtime/model_runner/forward_context.py",
    "mindie_llm/runtime/model_runner/input_buffer.py",
    "mindie_llm/runtime/model_runner/spec_worker.py",
    "mindie_llm/runtime/model_runner/forward_metadata/module_metadata.py",
    "mindie_llm/runtime/model_runner/forward_metadata/attn_metadata.py",
    "mindie_llm/runtime/model_runner/forward_metadata/mtp_metadata.py",
    "mindie_llm/runtime/model_runner/forward_metadata/dp_metadata.py",
    # graph capture and the wrapper around the runner
    "mindie_llm/runtime/compilation/aclgraph_backend.py",
    "mindie_llm/modeling/backend_type.py",
    "mindie_llm/modeling/model_wrapper/__init__.py",
    "mindie_llm/modeling/model_wrapper/wrapper.py",
    "mindie_llm/modeling/model_wrapper/model_info.py",
    "mindie_llm/modeling/model_wrapper/aclgraph/aclgraph_model_wrapper_exp.py",
    # attention
    "mindie_llm/runtime/layers/custom_layer.py",
    "mindie_llm/runtime/layers/attention/__init__.py",
    "mindie_llm/runtime/layers/attention/attention_layer.py",
    "mindie_llm/runtime/layers/attention/backend/__init__.py",
    "mindie_llm/runtime/layers/attention/backend/abstract.py",
    "mindie_llm/runtime/layers/attention/backend/fia_attention.py",
    # model discovery, base classes, configs
    "mindie_llm/runtime/models/__init__.py",
    "mindie_llm/runtime/models/base/router.py",
    "mindie_llm/runtime/models/base/model.py",
    "mindie_llm/runtime/models/base/model_descriptor.py",
    "mindie_llm/runtime/models/base/input_builder.py",
    "mindie_llm/runtime/config/huggingface_config.py",
    "mindie_llm/runtime/config/load_config.py",
    "mindie_llm/runtime/config/mindie_llm_config.py",
    "mindie_llm/runtime/config/configuration_utils.py",
    # process-wide helpers
    "mindie_llm/runtime/utils/torch_utils.py",
    "mindie_llm/runtime/utils/singleton.py",
    "mindie_llm/runtime/utils/distributed/__init__.py",
    "mindie_llm/runtime/utils/distributed/parallel_info_manager.py",
    "mindie_llm/runtime/utils/distributed/utils.py",
    "mindie_llm/utils/env.py",
    "mindie_llm/utils/log/logging.py",
    # the text generator: KV cache, backend, model inputs, start-up order
    "mindie_llm/text_generator/utils/kvcache_settings.py",
    "mindie_llm/text_generator/utils/npu_mem_tool.py",
    "mindie_llm/text_generator/utils/model_input.py",
    "mindie_llm/text_generator/adapter/__init__.py",
    "mindie_llm/text_generator/adapter/generator_backend.py",
    "mindie_llm/text_generator/adapter/generator_aclgraph.py",
    "mindie_llm/text_generator/adapter/torch_utils/kvcache_pool.py",
    "mindie_llm/text_generator/generator.py",
]
# Large modules: only these top-level symbols are recorded (the rest is not on the adapter's path).
ONLY = {
    "mindie_llm/text_generator/generator.py": ["WarmupParams", "PDModelConfig", "PDInterface", "Generator"],
    "mindie_llm/text_generator/adapter/generator_backend.py": ["GeneratorBackend"],
    "mindie_llm/text_generator/utils/npu_mem_tool.py": ["calc_block_mem", "gb"],
    "mindie_llm/runtime/utils/distributed/utils.py": ["even_divide", "set_device"],
    "mindie_llm/runtime/model_runner/spec_worker.py": ["auto_speculative_method_router", "speculative_worker_selector"],
    "mindie_llm/runtime/config/configuration_utils.py": ["LLMConfig", "SectionConfig", "convert_type"],
    "mindie_llm/modeling/model_wrapper/wrapper.py": ["ModelWrapper"],
    "mindie_llm/utils/env.py": ["EnvVar"],
}
# Module-level assignments recorded (name -> source text of the value).
VARIABLES = {
    "mindie_llm/runtime/model_runner/input_buffer.py": ["input_buffer"],
    "mindie_llm/runtime/model_runner/forward_context_exp.py": ["_forward_context", "_MC2_TOKEN_CAPACITY",
                                                               "MAX_MC2_OPERATOR_CAPACITY"],
    "mindie_llm/runtime/model_runner/forward_context.py": ["_forward_context"],
    "mindie_llm/runtime/compilation/aclgraph_backend.py": ["aclgraph_capturing_enable", "_global_graph_memory_pool"],
    "mindie_llm/runtime/layers/attention/__init__.py": ["_global_attn_dict"],
    "mindie_llm/runtime/utils/loader/default_model_loader.py": ["_global_param_dict"],
    "mindie_llm/runtime/utils/distributed/__init__.py": ["_PARALLEL_INFO_MANAGER"],
    "mindie_llm/runtime/utils/distributed/parallel_info_manager.py": ["DEFAULT_BUFFER_SIZE", "HCCL_BACKEND",
                                                                      "GLOO_BACKEND"],
    "mindie_llm/text_generator/utils/kvcache_settings.py": ["NZ_KV_CACHE_FORMAT", "NZ_KV_CACHE_INT8_FORMAT",
                                                            "INT8_BYTES_SIZE"],
    "mindie_llm/text_generator/adapter/generator_backend.py": ["MAX_WORLD_SIZE", "MAX_KEY_LENGTH"],
    "mindie_llm/runtime/models/base/router.py": ["DEFAULT_CONFIG_PATH"],
    "mindie_llm/utils/env.py": ["ENV"],
    "mindie_llm/utils/log/logging.py": ["logger"],
}


class Snapshot:
    """One commit of the bare repository; parsed files are cached (dataclass fields follow bases)."""

    def __init__(self, repo: str, commit: str) -> None:
        self.repo, self.commit = repo, commit
        self._trees: dict[str, ast.Module | None] = {}

    def source(self, path: str) -> str | None:
        result = subprocess.run(["git", "-C", self.repo, "show", f"{self.commit}:{path}"], capture_output=True,
                                text=True, check=False)
        return result.stdout if result.returncode == 0 else None

    def tree(self, module: str) -> ast.Module | None:
        for path in (module.replace(".", "/") + ".py", module.replace(".", "/") + "/__init__.py"):
            if path not in self._trees:
                text = self.source(path)
                self._trees[path] = ast.parse(text) if text is not None else None
            if self._trees[path] is not None:
                return self._trees[path]
        return None

    def inherited_fields(self, module: str, name: str, depth: int = 0) -> list[tuple[str, str | None, str]]:
        """Dataclass fields of ``module.name``, those of dataclass bases first (bases may live elsewhere)."""
        tree = self.tree(module)
        if tree is None or depth > 8:
            return []
        for node in tree.body:
            if isinstance(node, ast.ClassDef) and node.name == name:
                fields: list[tuple[str, str | None, str]] = []
                for base in node.bases:
                    inherited = self.inherited_fields(module, ast.unparse(base).split(".")[-1], depth + 1)
                    fields += [f for f in inherited if f[0] not in {x[0] for x in fields}]
                if not _is_dataclass(node):
                    return fields
                own = _dataclass_fields(node)
                return [f for f in fields if f[0] not in {x[0] for x in own}] + own
        for node in tree.body:  # a name imported from elsewhere
            if isinstance(node, ast.ImportFrom) and any((a.asname or a.name) == name for a in node.names):
                real = next(a.name for a in node.names if (a.asname or a.name) == name)
                return self.inherited_fields(_resolve(module, node), real, depth + 1)
        return []


def _resolve(current: str, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    package = current.split(".")[: -node.level]
    return ".".join(package + ([node.module] if node.module else []))


def _arg(arg: ast.arg, default: ast.expr | None, annotated: bool) -> str:
    text = arg.arg
    if annotated and arg.annotation is not None:
        text += ": " + ast.unparse(arg.annotation)
    if default is not None:
        text += (" = " if annotated and arg.annotation is not None else "=") + ast.unparse(default)
    return text


def signature(fn: ast.FunctionDef | ast.AsyncFunctionDef, drop_first: bool, annotated: bool = False) -> str:
    args = fn.args
    positional = args.posonlyargs + args.args
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    items = list(zip(positional, defaults, strict=True))[1 if drop_first and positional else 0:]
    posonly = len(args.posonlyargs) - (1 if drop_first and args.posonlyargs else 0)
    parts: list[str] = []
    for i, (arg, default) in enumerate(items):
        parts.append(_arg(arg, default, annotated))
        if posonly and i == posonly - 1:
            parts.append("/")
    if args.vararg:
        parts.append("*" + _arg(args.vararg, None, annotated))
    elif args.kwonlyargs:
        parts.append("*")
    parts += [_arg(arg, default, annotated) for arg, default in zip(args.kwonlyargs, args.kw_defaults, strict=True)]
    if args.kwarg:
        parts.append("**" + _arg(args.kwarg, None, annotated))
    text = "(" + ", ".join(parts) + ")"
    if annotated and fn.returns is not None:
        text += " -> " + ast.unparse(fn.returns)
    return text


def _decorators(node: ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    return [ast.unparse(d) for d in node.decorator_list]


def _is_dataclass(node: ast.ClassDef) -> bool:
    return any(text.split("(")[0].split(".")[-1] == "dataclass" for text in _decorators(node))


def _dataclass_fields(node: ast.ClassDef) -> list[tuple[str, str | None, str]]:
    out = []
    for stmt in node.body:
        if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
            continue
        annotation = ast.unparse(stmt.annotation)
        if annotation.startswith("ClassVar"):
            continue
        default = None
        value = stmt.value
        if isinstance(value, ast.Call) and ast.unparse(value.func).split(".")[-1] == "field":
            keywords = {k.arg: k.value for k in value.keywords}
            if "default" in keywords:
                default = ast.unparse(keywords["default"])
            elif "default_factory" in keywords:
                default = "<factory>"
        elif value is not None:
            default = ast.unparse(value)
        out.append((stmt.target.id, default, annotation))
    return out


def class_entry(snapshot: Snapshot, module: str, node: ast.ClassDef) -> dict[str, Any]:
    entry: dict[str, Any] = {"bases": [ast.unparse(b) for b in node.bases], "line": node.lineno}
    if node.decorator_list:
        entry["decorators"] = _decorators(node)
    methods, annotated, lines, kinds = {}, {}, {}, {}
    for stmt in node.body:
        if not isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        names = [text.split("(")[0] for text in _decorators(stmt)]
        lines[stmt.name] = stmt.lineno
        if "property" in names or "cached_property" in names or "functools.cached_property" in names:
            kinds[stmt.name] = "property" if "property" in names else "cached_property"
            continue
        kind = "staticmethod" if "staticmethod" in names else "classmethod" if "classmethod" in names else "method"
        drop = kind == "classmethod"
        methods[stmt.name] = signature(stmt, drop)
        annotated[stmt.name] = signature(stmt, drop, annotated=True)
        if kind != "method":
            kinds[stmt.name] = kind
        if "abstractmethod" in names:
            kinds[stmt.name] = kinds.get(stmt.name, "method") + "+abstract"
    if _is_dataclass(node):
        fields = snapshot.inherited_fields(module, node.name)
        entry["fields"] = {name: annotation + (f" = {default}" if default is not None else "")
                           for name, default, annotation in fields}
        if "__init__" not in methods:
            methods["__init__"] = "(" + ", ".join(["self"] + [name + (f"={default}" if default is not None else "")
                                                              for name, default, _ in fields]) + ")"
            kinds["__init__"] = "dataclass-generated"
    if any(ast.unparse(b).endswith("NamedTuple") for b in node.bases):
        fields = _dataclass_fields(node)
        entry["fields"] = {name: annotation + (f" = {default}" if default is not None else "")
                           for name, default, annotation in fields}
        methods["__new__"] = "(_cls, " + ", ".join(name + (f"={default}" if default is not None else "")
                                                   for name, default, _ in fields) + ")"
        kinds["__new__"] = "namedtuple-generated"
    attributes = {stmt.targets[0].id: ast.unparse(stmt.value)[:200] for stmt in node.body
                  if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name)}
    if attributes:
        entry["class_attributes"] = attributes
    entry.update(methods=methods, methods_annotated=annotated, method_lines=lines)
    if kinds:
        entry["method_kinds"] = kinds
    return entry


def module_entry(snapshot: Snapshot, path: str, source: str) -> dict[str, Any]:
    tree = ast.parse(source)
    module = path[:-3].replace("/", ".").removesuffix(".__init__")
    only = ONLY.get(path)
    symbols: dict[str, Any] = {}
    lines: dict[str, int] = {}
    annotated: dict[str, str] = {}
    decorators: dict[str, list[str]] = {}
    for node in tree.body:
        if not isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        if only is not None and node.name not in only:
            continue
        lines[node.name] = node.lineno
        if isinstance(node, ast.ClassDef):
            symbols[node.name] = class_entry(snapshot, module, node)
            continue
        symbols[node.name] = signature(node, False)
        annotated[node.name] = signature(node, False, annotated=True)
        if node.decorator_list:
            decorators[node.name] = _decorators(node)
    variables = {}
    for node in tree.body:
        targets: list[str] = []
        if isinstance(node, ast.Assign):
            targets = [t.id for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            targets = [node.target.id]
        for target in targets:
            if target in VARIABLES.get(path, []):
                variables[target] = {"value": ast.unparse(node.value), "line": node.lineno}
    out: dict[str, Any] = {"module": module, "path": path, "lines_total": source.count("\n") + 1,
                           "symbols": symbols, "lines": lines}
    if annotated:
        out["functions_annotated"] = annotated
    if decorators:
        out["function_decorators"] = decorators
    if variables:
        out["variables"] = variables
    return out


def record(repo: str, commit: str = COMMIT, compare: str | None = DEV) -> dict[str, Any]:
    """The manifest of ``commit`` (with, per module, whether ``compare`` has the same file)."""
    snapshot = Snapshot(repo, commit)
    entries = []
    for path in MODULES:
        source = snapshot.source(path)
        if source is None:
            entries.append({"module": path[:-3].replace("/", "."), "path": path, "missing": True})
            continue
        entry = module_entry(snapshot, path, source)
        if compare:
            other_snapshot = Snapshot(repo, compare)
            other = other_snapshot.source(path)
            if other is None:
                entry["compare_commit_status"] = "missing"
            elif other == source:
                entry["compare_commit_status"] = "identical"
            else:
                entry["compare_commit_status"] = "differs"
                theirs = module_entry(other_snapshot, path, other)["symbols"]
                added = sorted(set(theirs) - set(entry["symbols"]))
                removed = sorted(set(entry["symbols"]) - set(theirs))
                if added or removed:
                    entry["compare_commit_symbols"] = {"added": {k: theirs[k] for k in added}, "removed": removed}
        entries.append(entry)
    date = subprocess.run(["git", "-C", repo, "log", "-1", "--format=%cs", commit], capture_output=True, text=True,
                          check=True).stdout.strip()
    head: dict[str, Any] = {"repo": REPO, "commit": commit, "commit_date": date, "read_on": RECORDED_ON}
    if compare:
        head["compared_with"] = compare
    head["notes"] = ("Signatures are parsed from source with ast (no import): names and defaults as source text; "
                     "instance methods include self, classmethods omit cls, staticmethods as written. ModelRunnerExp "
                     "at module level is the factory made by auto_speculative_method_router (functools.wraps("
                     "original_class, updated=())); compare its __wrapped__.")
    head["modules"] = entries
    return head


def main() -> None:
    repo = sys.argv[1]
    commit = sys.argv[2] if len(sys.argv) > 2 else COMMIT
    compare = sys.argv[3] if len(sys.argv) > 3 else DEV
    json.dump(record(repo, commit, compare), sys.stdout, indent=1, ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
