"""Write a complete MindIE Service ``config.json`` for Baichuan-M1 from a weight directory and an NPU list.

Batch and prefill limits come from the memory plan (``engine/memory_plan.py``), which sizes the
global and sliding-window layers separately; MindIE's own rule of thumb assumes one head
geometry for every layer and no window. The output is checked with the same rules as
``mindie-config --check`` before it is written, and written atomically.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..atomic_write import write_text_atomic
from ..engine.memory_plan import MemoryPlan, valid_tensor_parallel_sizes, window_blocks
from .check import BLOCK_SIZE, REQUIRED_CONFIG_MODE, HostAssumptions, baichuan_problems, tls_problems, tls_resolver
from .checkpoint_info import GIB, CheckpointInfo, inspect_checkpoint
from .schema import Backend, Log, MindIEConfig, Model, ModelDeploy, Schedule, Server, cross_field_problems

BACKENDS = ("atb", "torch")
DEFAULT_MAX_SEQ_LEN = 8192
DEFAULT_PREFILL_TOKENS = 8192
DEFAULT_MAX_LINK_NUM = 300  # MindIE's recommended value


class GenerationError(ValueError):
    """The requested deployment cannot be written; the message says which input to change."""


@dataclass
class ServiceOptions:
    """The choices a user makes on the command line (defaults are the documented MindIE ones)."""

    model_path: Path
    npus: list[int]
    max_seq_len: int | None = None
    max_input_len: int | None = None
    max_prefill_tokens: int | None = None
    tensor_parallel: int | None = None
    host: str = "127.0.0.1"
    management_host: str = "127.0.0.1"
    port: int = 1025
    management_port: int = 1026
    metrics_port: int = 1027
    https: bool = True
    cert_dir: Path | None = None
    npu_memory_gib: float = 64.0
    memory_fraction: float = 0.8
    backend: str = "atb"
    model_name: str | None = None


@dataclass
class GeneratedConfig:
    config: MindIEConfig
    plan: MemoryPlan
    info: CheckpointInfo
    options: ServiceOptions
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(self.config.to_json_dict(), indent=4, ensure_ascii=False) + "\n"


def model_entry(backend: str, name: str, weight_path: Path, world_size: int) -> Model:
    """The ModelConfig entry: the only part of the config that differs between MindIE back ends."""
    if backend == "atb":
        return Model(modelName=name, modelWeightPath=str(weight_path), worldSize=world_size,
                     cpuMemSize=0, npuMemSize=-1, backendType="atb", trustRemoteCode=False)
    if backend == "torch":  # MindIE's torch runtime, running the model folder `m1-ascend mindie-adapter install` writes
        if world_size != 1:
            raise GenerationError(f"backend torch (m1-ascend's MindIE adapter) runs one NPU per instance, not {world_size}; "
                                  "pass --tensor-parallel 1 for one instance per NPU")
        return Model(modelName=name, modelWeightPath=str(weight_path), worldSize=1,
                     cpuMemSize=0, npuMemSize=-1, backendType="torch", trustRemoteCode=False)
    raise GenerationError(f"unknown MindIE backend {backend!r}; choose one of {', '.join(BACKENDS)}")


def served_model_name(weight_path: Path) -> str:
    """The directory name, reduced to what MindIE accepts (letters, digits, '-', '.', '_', alnum at both ends)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", weight_path.name).strip("-._")[:256].strip("-._")
    return name or "baichuan-m1"


def choose_layout(info: CheckpointInfo, num_npus: int, tensor_parallel: int | None) -> tuple[int, list[str]]:
    """Cards per instance: all of them when the heads split evenly, else the largest even split."""
    valid = valid_tensor_parallel_sizes(info.config, num_npus)
    if tensor_parallel is not None:
        if tensor_parallel not in valid or num_npus % tensor_parallel:
            raise GenerationError(f"--tensor-parallel {tensor_parallel} must divide the {num_npus} NPUs and be one of "
                                  f"{', '.join(map(str, valid))} for this model's head counts")
        return tensor_parallel, []
    tp = max(t for t in valid if num_npus % t == 0)
    if tp == num_npus:
        return tp, []
    c = info.config
    return tp, [f"{c.num_attention_heads} global and {c.num_swa_attention_heads} sliding-window query heads cannot be "
                f"split over {num_npus} cards: {num_npus // tp} instances of {tp} cards each"]


def service_lengths(info: CheckpointInfo, options: ServiceOptions) -> tuple[int, int, int]:
    """(maxSeqLen, maxInputTokenLen, maxPrefillTokens), checked against the model's context."""
    max_pos = info.config.max_position_embeddings
    max_seq_len = options.max_seq_len or min(DEFAULT_MAX_SEQ_LEN, max_pos)
    if max_seq_len > max_pos:
        raise GenerationError(f"--max-seq-len {max_seq_len} exceeds the model's max_position_embeddings {max_pos}")
    if max_seq_len < 2:
        raise GenerationError(f"--max-seq-len must be at least 2, got {max_seq_len}")
    max_input = options.max_input_len or max_seq_len * 3 // 4  # a quarter left for the answer by default
    if not 1 <= max_input < max_seq_len:
        raise GenerationError(f"--max-input-len {max_input} must be between 1 and --max-seq-len - 1 ({max_seq_len - 1})")
    prefill = options.max_prefill_tokens or max(max_input, DEFAULT_PREFILL_TOKENS)
    if prefill < max_input:
        raise GenerationError(f"--max-prefill-tokens {prefill} must be at least --max-input-len {max_input} "
                              "(a prompt is prefilled in one batch)")
    return max_seq_len, max_input, prefill


def build_config(options: ServiceOptions) -> GeneratedConfig:
    """The config and the memory plan behind it; GenerationError/CheckpointError say what to change."""
    if not 0 < options.memory_fraction <= 1:
        raise GenerationError(f"--memory-fraction must be in (0, 1], got {options.memory_fraction}")
    if not options.npus:
        raise GenerationError("--npus lists no NPU")
    info = inspect_checkpoint(options.model_path)
    tp, notes = choose_layout(info, len(options.npus), options.tensor_parallel)
    max_seq_len, max_input, prefill = service_lengths(info, options)
    plan = info.memory_plan(max_seq_len, tp, prefill, options.npu_memory_gib, options.memory_fraction, BLOCK_SIZE)
    if not plan.max_concurrent_sequences:
        raise GenerationError(
            f"one {max_seq_len}-token sequence does not fit: {options.npu_memory_gib:g} GiB x {options.memory_fraction:g} "
            f"per card minus {plan.weight_bytes / GIB:.2f} GiB weights and {plan.prefill_activation_bytes / GIB:.2f} GiB "
            f"prefill activations leaves {plan.kv_budget_bytes / GIB:.2f} GiB; use more NPUs or a shorter --max-seq-len")
    batch = min(plan.max_concurrent_sequences, 819200)
    instances = [options.npus[i:i + tp] for i in range(0, len(options.npus), tp)]
    server = Server(
        ipAddress=options.host, managementIpAddress=options.management_host, port=options.port,
        managementPort=options.management_port, metricsPort=options.metrics_port, allowAllZeroIpListening=False,
        maxLinkNum=DEFAULT_MAX_LINK_NUM, httpsEnabled=options.https, inferMode="standard", interCommTLSEnabled=True,
        distDPServerEnabled=False,
    )
    schedule = Schedule(
        templateType="Standard", templateName="Standard_LLM", cacheBlockSize=BLOCK_SIZE,
        # A prompt takes at least one block, so a prefill batch never holds more prompts than this.
        maxPrefillBatchSize=max(1, min(batch, prefill // BLOCK_SIZE)), maxPrefillTokens=prefill,
        prefillTimeMsPerReq=150, prefillPolicyType=0, decodeTimeMsPerReq=50, decodePolicyType=0,
        maxBatchSize=batch, maxIterTimes=max_seq_len - max_input, maxPreemptCount=0,
        maxQueueDelayMicroseconds=5000, maxN=min(128, batch),
    )
    name = options.model_name or served_model_name(info.path)
    config = MindIEConfig(
        Version="1.0.0", ServerConfig=server,
        BackendConfig=Backend(
            backendName="mindieservice_llm_engine", modelInstanceNumber=len(instances), npuDeviceIds=instances,
            tokenizerProcessNumber=8, multiNodesInferEnabled=False, interNodeTLSEnabled=True,
            ModelDeployConfig=ModelDeploy(maxSeqLen=max_seq_len, maxInputTokenLen=max_input, truncation=False,
                                          ModelConfig=[model_entry(options.backend, name, info.path, tp)]),
            ScheduleConfig=schedule,
        ),
        LogConfig=Log(dynamicLogLevelValidHours=2),
    )
    generated = GeneratedConfig(config, plan, info, options, notes)
    _refuse_invalid(generated)
    return generated


def _refuse_invalid(generated: GeneratedConfig) -> None:
    """Run the checker's rules on the output; with ``cert_dir``, the TLS files must be there."""
    config, options = generated.config, generated.options
    host = HostAssumptions(options.npu_memory_gib, options.memory_fraction)
    errors = [p for p in cross_field_problems(config) + baichuan_problems(config, 0, generated.info, host)
              if p.severity == "error"]
    if options.https and options.cert_dir is not None:
        resolve = tls_resolver(None, options.cert_dir)
        errors += [p for p in tls_problems(config.ServerConfig, resolve) if p.severity == "error"]
    if errors:
        raise GenerationError("; ".join(str(p) for p in errors))


def write_config(generated: GeneratedConfig, output: Path) -> None:
    """Atomic write with the mode the MindIE-LLM server insists on."""
    if not output.parent.is_dir():
        raise GenerationError(f"{output.parent}: no such directory for the output file")
    write_text_atomic(output, generated.to_json(), REQUIRED_CONFIG_MODE)


def summary(generated: GeneratedConfig, output: Path) -> str:
    """What was written and the memory plan behind its numbers, for the operator's change record."""
    plan, options, info = generated.plan, generated.options, generated.info
    backend, deploy = generated.config.BackendConfig, generated.config.BackendConfig.ModelDeployConfig
    schedule, tp = backend.ScheduleConfig, plan.tensor_parallel
    usable = options.npu_memory_gib * options.memory_fraction
    windows = window_blocks(info.config.sliding_window, plan.block_size)
    lines = [
        f"wrote {output} (MindIE backend {options.backend}, model {deploy.ModelConfig[0].modelName}, {info.dtype})",
        *(f"note: {note}" for note in generated.notes),
        f"NPUs {','.join(map(str, options.npus))}: {backend.modelInstanceNumber} instance(s) x worldSize {tp}",
        f"lengths: maxSeqLen {deploy.maxSeqLen}, maxInputTokenLen {deploy.maxInputTokenLen}, "
        f"maxIterTimes {schedule.maxIterTimes}, cacheBlockSize {schedule.cacheBlockSize}",
        f"memory plan per card: {options.npu_memory_gib:g} GiB x NPU_MEMORY_FRACTION {options.memory_fraction:g} = "
        f"{usable:.2f} GiB usable (headroom {options.npu_memory_gib - usable:.2f} GiB for runtime and system)",
        f"  weights {plan.weight_bytes / GIB:.2f} GiB, prefill activations for {plan.prefill_tokens} tokens "
        f"{plan.prefill_activation_bytes / GIB:.2f} GiB (estimate), KV budget {plan.kv_budget_bytes / GIB:.2f} GiB",
        f"  one {plan.max_seq_len}-token sequence: KV {plan.kv_cache_bytes_per_sequence / GIB:.3f} GiB "
        f"(global layers {plan.global_blocks_per_sequence} blocks, sliding-window layers "
        f"{plan.sliding_blocks_per_sequence} blocks, capped at {windows} by the window) "
        f"+ conv state {plan.conv_state_bytes_per_sequence / 1024:.0f} KiB",
        f"  -> maxBatchSize {schedule.maxBatchSize} per instance ({schedule.maxBatchSize * backend.modelInstanceNumber} "
        f"total), maxPrefillTokens {schedule.maxPrefillTokens}, maxPrefillBatchSize {schedule.maxPrefillBatchSize}",
        f"TLS {'on' if generated.config.ServerConfig.httpsEnabled else 'OFF'}; "
        f"business {options.host}:{options.port}, management {options.management_host}:{options.management_port}, "
        f"metrics port {options.metrics_port}",
        "start MindIE with NPU_MEMORY_FRACTION set to the fraction above (deploy/env/mindie.env)",
    ]
    if options.https and options.cert_dir is None:
        lines.append("TLS files not checked here: pass --cert-dir, or run `m1-ascend mindie-config --check` on the "
                     "installed config")
    return "\n".join(lines)
