"""Check a MindIE Service ``config.json`` against the schema, this host and the Baichuan-M1 weights.

Every finding is a :class:`Problem` located by its JSON path, so a hospital's IT staff can fix a
hand-edited file field by field. The generator runs the same model rules on what it writes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..checkpoint import CheckpointError
from ..engine.memory_plan import check_tensor_parallel
from .checkpoint_info import CheckpointInfo, inspect_checkpoint
from .host import NpuListing
from .schema import MindIEConfig, Problem, Server, parse_config

MAX_CONFIG_BYTES = 10 * 1024 * 1024  # MindIE refuses files outside (0, 10 MB]
REQUIRED_CONFIG_MODE = 0o640  # the MindIE-LLM 2.x server refuses any other mode
BLOCK_SIZE = 128  # FIA's paged prefill needs a multiple of 128 and MindIE allows at most 128
DEPLOY = "BackendConfig.ModelDeployConfig"
SCHEDULE = "BackendConfig.ScheduleConfig"

Resolver = Callable[[str], Path | None]


@dataclass(frozen=True)
class HostAssumptions:
    """What the memory rules assume about the cards (the config does not say)."""

    npu_memory_gib: float = 64.0
    memory_fraction: float = 0.8  # MindIE's NPU_MEMORY_FRACTION


def baichuan_problems(config: MindIEConfig, index: int, info: CheckpointInfo, host: HostAssumptions) -> list[Problem]:
    """Rules that follow from Baichuan-M1's architecture and the memory plan, for ModelConfig[index]."""
    deploy, schedule = config.BackendConfig.ModelDeployConfig, config.BackendConfig.ScheduleConfig
    model = deploy.ModelConfig[index]
    here = f"{DEPLOY}.ModelConfig[{index}]"
    problems: list[Problem] = []
    max_pos = info.config.max_position_embeddings
    if deploy.maxSeqLen > max_pos:
        problems.append(Problem(f"{DEPLOY}.maxSeqLen", f"{deploy.maxSeqLen} exceeds max_position_embeddings {max_pos}"))
    if schedule.cacheBlockSize != BLOCK_SIZE:
        problems.append(Problem(f"{SCHEDULE}.cacheBlockSize", f"must be {BLOCK_SIZE} for Baichuan-M1 "
                                "(FIA paged prefill needs a multiple of 128; MindIE allows at most 128)"))
    if deploy.truncation == 1 and not isinstance(deploy.truncation, bool):
        problems.append(Problem(f"{DEPLOY}.truncation", "1 (cut on the left) is only supported for qwen and deepseek"))
    try:
        check_tensor_parallel(info.config, model.worldSize)
    except ValueError as exc:
        return [*problems, Problem(f"{here}.worldSize", f"{model.worldSize} cards: {exc}")]
    plan = info.memory_plan(deploy.maxSeqLen, model.worldSize, schedule.maxPrefillTokens, host.npu_memory_gib,
                            host.memory_fraction, schedule.cacheBlockSize)
    assumption = (f"on {host.npu_memory_gib:g} GiB cards at NPU_MEMORY_FRACTION {host.memory_fraction:g} "
                  f"with {model.worldSize}-way tensor parallelism")
    if not plan.max_concurrent_sequences:
        problems.append(Problem(f"{DEPLOY}.maxSeqLen", f"not even one {deploy.maxSeqLen}-token sequence fits {assumption}"))
    elif schedule.maxBatchSize > plan.max_concurrent_sequences:
        problems.append(Problem(f"{SCHEDULE}.maxBatchSize", f"{schedule.maxBatchSize} exceeds the "
                                f"{plan.max_concurrent_sequences} sequences of maxSeqLen tokens that fit {assumption}",
                                "warning"))
    return problems


def npu_problems(config: MindIEConfig, listing: NpuListing | None) -> list[Problem]:
    if listing is None or config.BackendConfig.multiNodesInferEnabled:
        return []
    return [Problem(f"BackendConfig.npuDeviceIds[{i}]", f"NPU {npu} does not exist ({listing.describe()})")
            for i, ids in enumerate(config.BackendConfig.npuDeviceIds) for npu in ids if npu not in listing.ids]


def _tls_files(server: Server) -> list[tuple[str, str, bool]]:
    """(JSON path, file relative to the MindIE install dir, required) for the TLS material in use."""
    if not server.httpsEnabled:
        return []
    planes = [""]
    if server.managementIpAddress != server.ipAddress:  # separate certificates only for a separate address
        planes += ["management", "metrics"]
    files: list[tuple[str, str, bool]] = []
    for plane in planes:
        def name(suffix: str, plane: str = plane) -> str:
            return f"{plane}Tls{suffix}" if plane else f"tls{suffix}"
        for k, ca in enumerate(getattr(server, name("CaFile"))):
            files.append((f"ServerConfig.{name('CaFile')}[{k}]", os.path.join(server.tlsCaPath, ca), True))
        files += [(f"ServerConfig.{name('Cert')}", getattr(server, name("Cert")), True),
                  (f"ServerConfig.{name('Pk')}", getattr(server, name("Pk")), True)]
        if getattr(server, name("PkPwd")):
            files.append((f"ServerConfig.{name('PkPwd')}", getattr(server, name("PkPwd")), False))
        if getattr(server, name("CrlPath")):
            files += [(f"ServerConfig.{name('CrlFiles')}[{k}]", os.path.join(getattr(server, name("CrlPath")), crl), False)
                      for k, crl in enumerate(getattr(server, name("CrlFiles")))]
    files += [("ServerConfig.kmcKsfMaster", server.kmcKsfMaster, False),
              ("ServerConfig.kmcKsfStandby", server.kmcKsfStandby, False)]
    return files


def tls_problems(server: Server, resolve: Resolver | None) -> list[Problem]:
    """TLS paths must be relative to the install dir; with a resolver, the files must also exist."""
    problems: list[Problem] = []
    for path, relative, required in _tls_files(server):
        if os.path.isabs(relative) or ".." in Path(relative).parts:
            problems.append(Problem(path, f"{relative!r} must be a path inside the MindIE install directory"))
            continue
        target = resolve(relative) if resolve else None
        if target is None:
            continue
        if not target.is_file():
            hint = "" if required else (" (the service will ask for the key password at start)" if path.endswith("PkPwd")
                                        else " (optional)")
            problems.append(Problem(path, f"{target} does not exist{hint}", "error" if required else "warning"))
        elif path.endswith(("Pk", "PkPwd")) and target.stat().st_mode & 0o077:
            problems.append(Problem(path, f"{target} is readable by other users (chmod 600)", "warning"))
    return problems


def tls_resolver(mindie_home: Path | None, cert_dir: Path | None) -> Resolver | None:
    """Where a TLS path (relative to the MindIE install dir) is on this host; ``cert_dir`` stands for <home>/security."""
    if mindie_home is None and cert_dir is None:
        return None

    def resolve(relative: str) -> Path | None:
        parts = Path(relative).parts
        if cert_dir is not None and parts[:1] == ("security",):
            return cert_dir.absolute().joinpath(*parts[1:])
        return mindie_home / relative if mindie_home is not None else None

    return resolve


def read_config_json(path: Path) -> tuple[Any, list[Problem]]:
    """Decoded JSON, or None with the reason (MindIE's size limits, syntax errors with line and column)."""
    if not path.is_file():
        return None, [Problem("$", f"{path}: no such file")]
    size = path.stat().st_size
    if not 0 < size <= MAX_CONFIG_BYTES:
        return None, [Problem("$", f"{path}: {size} bytes; MindIE reads only files of 1 byte to 10 MB")]
    try:
        return json.loads(path.read_text(encoding="utf-8")), []
    except json.JSONDecodeError as exc:
        return None, [Problem("$", f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")]


def install_dir_of(config_path: Path) -> Path | None:
    """MindIE reads ``<install dir>/conf/config.json``; a file kept elsewhere says nothing about it."""
    config_path = config_path.absolute()
    return config_path.parent.parent if config_path.parent.name == "conf" else None


def check_config_file(path: str | Path, mindie_home: Path | None = None, npus: NpuListing | None = None,
                      host: HostAssumptions = HostAssumptions(), cert_dir: Path | None = None) -> list[Problem]:
    """Every problem with a config file: schema, file mode, NPUs, TLS files, weights and memory."""
    path = Path(path)
    data, problems = read_config_json(path)
    if data is None:
        return problems
    config, found = parse_config(data)
    problems += found
    mode = path.stat().st_mode & 0o777
    if mode != REQUIRED_CONFIG_MODE:
        problems.append(Problem("$", f"file mode {mode:o}; the MindIE-LLM 2.x server starts only with mode 640", "warning"))
    if config is None:
        return problems
    problems += npu_problems(config, npus)
    problems += tls_problems(config.ServerConfig, tls_resolver(mindie_home or install_dir_of(path), cert_dir))
    for index, model in enumerate(config.BackendConfig.ModelDeployConfig.ModelConfig):
        try:
            info = inspect_checkpoint(model.modelWeightPath)
        except CheckpointError as exc:
            problems.append(Problem(f"{DEPLOY}.ModelConfig[{index}].modelWeightPath", str(exc)))
            continue
        problems += baichuan_problems(config, index, info, host)
    return problems
