"""The MindIE Service ``config.json`` schema: one pydantic model for writing and for checking.

Field names, types, ranges and defaults follow MindIE-LLM's service parameter reference
(``service_parameter_configuration.md``, summarised in the project's ascend-mindie spec).
Fields the reference marks required have no default, so a hand-written file that omits them
fails validation; the rest carry the documented defaults, so the generator's output lists
every field. Types are strict (MindIE's C++ reader does not coerce ``"5"`` to 5 or 1 to true).

Rules that tie several fields together (``maxPrefillTokens >= maxInputTokenLen`` and the
like) are in :func:`cross_field_problems`, which the generator also runs on its own output.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Annotated, Any, Literal, get_args, get_origin

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

UINT32_MAX = 2**32 - 1
INT32_MAX = 2**31 - 1


def _ip(value: str) -> str:
    ipaddress.ip_address(value)  # raises ValueError for anything but an IPv4/IPv6 literal
    return value


def _unique(values: list[Any]) -> list[Any]:
    """JSON has no sets: a ``std::set`` field written with a repeated element is a mistake."""
    if len(set(values)) != len(values):
        raise ValueError(f"elements must be unique (a set), got {values}")
    return values


def _uint(low: int = 0, high: int = UINT32_MAX) -> Any:
    return Annotated[int, Field(ge=low, le=high)]


IpAddress = Annotated[str, AfterValidator(_ip)]
Port = _uint(1024, 65535)
Path4096 = Annotated[str, Field(min_length=1, max_length=4096)]
OptionalPath4096 = Annotated[str, Field(max_length=4096)]
TlsFileSet = Annotated[list[Path4096], Field(min_length=1, max_length=3), AfterValidator(_unique)]
FileSet = Annotated[list[Path4096], Field(min_length=1), AfterValidator(_unique)]
NpuSet = Annotated[list[_uint()], Field(min_length=1), AfterValidator(_unique)]
ModelName = Annotated[str, Field(max_length=256, pattern=r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")]


class Section(BaseModel):
    """A JSON object of the config; classes are named after their section minus "Config" (the field keeps it)."""

    # Unknown keys are kept (newer MindIE releases add fields) and reported as warnings.
    model_config = ConfigDict(strict=True, extra="allow", validate_default=True)


class HealthCheck(Section):
    npuUsageThreshold: _uint(0, 100) = 10


class Server(Section):
    ipAddress: IpAddress
    managementIpAddress: IpAddress = "127.0.0.2"
    port: Port
    managementPort: Port = 1026
    metricsPort: Port = 1027
    allowAllZeroIpListening: bool
    maxLinkNum: _uint(1, 4096)
    httpsEnabled: bool
    fullTextEnabled: bool = False
    tlsCaPath: Path4096 = "security/ca/"
    tlsCaFile: TlsFileSet = ["ca.pem"]
    tlsCert: Path4096 = "security/certs/server.pem"
    tlsPk: Path4096 = "security/keys/server.key.pem"
    tlsPkPwd: OptionalPath4096 = "security/pass/key_pwd.txt"
    tlsCrlPath: OptionalPath4096 = "security/certs/"
    tlsCrlFiles: TlsFileSet = ["server_crl.pem"]
    managementTlsCaFile: TlsFileSet = ["management_ca.pem"]
    managementTlsCert: Path4096 = "security/certs/management/server.pem"
    managementTlsPk: Path4096 = "security/keys/management/server.key.pem"
    managementTlsPkPwd: OptionalPath4096 = "security/pass/management/key_pwd.txt"
    managementTlsCrlPath: Path4096 = "security/management/certs/"
    managementTlsCrlFiles: TlsFileSet = ["server_crl.pem"]
    metricsTlsCaFile: TlsFileSet = ["metrics_ca.pem"]
    metricsTlsCert: Path4096 = "security/certs/metrics/server.pem"
    metricsTlsPk: Path4096 = "security/keys/metrics/server.key.pem"
    metricsTlsPkPwd: OptionalPath4096 = "security/pass/metrics/key_pwd.txt"
    metricsTlsCrlPath: Path4096 = "security/metrics/certs/"
    metricsTlsCrlFiles: TlsFileSet = ["server_crl.pem"]
    kmcKsfMaster: Path4096 = "tools/pmt/master/ksfa"
    kmcKsfStandby: Path4096 = "tools/pmt/standby/ksfb"
    inferMode: Literal["standard", "dmi"]
    interCommTLSEnabled: bool = True
    interCommPort: Port = 1121
    interCommTlsCaPath: Path4096 = "security/grpc/ca/"
    interCommTlsCaFiles: FileSet = ["ca.pem"]
    interCommTlsCert: Path4096 = "security/grpc/certs/server.pem"
    interCommPk: Path4096 = "security/grpc/keys/server.key.pem"
    interCommPkPwd: Path4096 = "security/grpc/pass/key_pwd.txt"
    interCommTlsCrlPath: Path4096 = "security/grpc/certs/"
    interCommTlsCrlFiles: FileSet = ["server_crl.pem"]
    openAiSupport: str = "vllm"
    tokenTimeout: _uint(1, 3600) = 600
    e2eTimeout: _uint(1, 65535) = 600
    maxRequestLength: _uint(1, 100) = 40
    distDPServerEnabled: bool
    HealthCheckConfig: HealthCheck = HealthCheck()


class Model(Section):
    modelInstanceType: Literal["Standard", "StandardMock"] = "Standard"
    modelName: ModelName
    modelWeightPath: Path4096
    worldSize: _uint(1)
    cpuMemSize: _uint()
    npuMemSize: Annotated[int, Field(ge=-1, le=INT32_MAX)]
    backendType: Literal["atb", "torch"]
    trustRemoteCode: bool = False
    kv_trans_timeout: Annotated[int, Field(le=INT32_MAX)] = 10
    kv_link_timeout: Annotated[int, Field(le=INT32_MAX)] = 1080


class ModelDeploy(Section):
    maxSeqLen: _uint(1)
    maxInputTokenLen: _uint(1, 4194304)
    # -1/true: cut on the right, 0/false: reject over-long input, 1: cut on the left.
    truncation: bool | Annotated[int, Field(ge=-1, le=1)] = Field(default=0, union_mode="left_to_right")
    ModelConfig: Annotated[list[Model], Field(min_length=1)]


class Schedule(Section):
    templateType: Literal["Standard", "Mix"]
    templateName: Literal["Standard_LLM"]
    cacheBlockSize: _uint(1, 128)
    maxPrefillBatchSize: _uint()  # [1, maxBatchSize]; 0 means "use maxBatchSize"
    maxPrefillTokens: _uint(1, 4194304)
    prefillTimeMsPerReq: _uint(0, 1000)
    prefillPolicyType: Literal[0]
    decodeTimeMsPerReq: _uint(0, 1000)
    decodePolicyType: Literal[0]
    maxBatchSize: _uint(1, 819200)
    maxIterTimes: _uint(1)
    maxPreemptCount: _uint()
    supportSelectBatch: bool = False
    maxQueueDelayMicroseconds: _uint(500, 1000000)
    maxFirstTokenWaitTime: _uint(0, 3600000) = 2500
    maxN: _uint(1, 8192) = 128


class Backend(Section):
    backendName: Literal["mindieservice_llm_engine"]
    modelInstanceNumber: _uint(1, 10)
    npuDeviceIds: Annotated[list[NpuSet], Field(min_length=1)]
    tokenizerProcessNumber: _uint(1, 32)
    multiNodesInferEnabled: bool = False
    multiNodesInferPort: Port = 1120
    interNodeTLSEnabled: bool = True
    interNodeTlsCaPath: Path4096 = "security/grpc/ca/"
    interNodeTlsCaFiles: FileSet = ["ca.pem"]
    interNodeTlsCert: Path4096 = "security/grpc/certs/server.pem"
    interNodeTlsPk: Path4096 = "security/grpc/keys/server.key.pem"
    interNodeTlsPkPwd: OptionalPath4096 = "security/grpc/pass/mindie_server_key_pwd.txt"
    interNodeTlsCrlPath: Path4096 = "security/grpc/certs/"
    interNodeTlsCrlFiles: FileSet = ["server_crl.pem"]
    interNodeKmcKsfMaster: Path4096 = "tools/pmt/master/ksfa"
    ModelDeployConfig: ModelDeploy
    ScheduleConfig: Schedule


class Log(Section):
    dynamicLogLevel: str = ""
    dynamicLogLevelValidHours: _uint(1, 168)
    dynamicLogLevelValidTime: str = ""


class MindIEConfig(Section):
    Version: Literal["1.0.0"]
    ServerConfig: Server
    BackendConfig: Backend
    LogConfig: Log
    EnableDynamicAdjustTimeoutConfig: bool = False

    def to_json_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


@dataclass(frozen=True)
class Problem:
    """One finding about a config file, located by its JSON path."""

    path: str
    message: str
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        return f"{self.severity}: {self.path}: {self.message}"


def json_path(loc: tuple[Any, ...]) -> str:
    """``('A', 'B', 0, 'c')`` -> ``A.B[0].c`` (how the checker names a field)."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "$"


def _input_loc(data: Any, loc: tuple[Any, ...], error_type: str) -> tuple[Any, ...]:
    """The part of a pydantic error location that exists in the input (drops union member tags)."""
    kept: list[Any] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and isinstance(part, str) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        elif error_type == "missing" and isinstance(node, dict):
            kept.append(part)
            break
        else:
            break
        kept.append(part)
    return tuple(kept)


def validation_problems(data: Any, error: ValidationError) -> list[Problem]:
    """One problem per field that failed its type or range; alternatives of a union are merged."""
    merged: dict[str, list[str]] = {}
    for item in error.errors(include_url=False):
        path = json_path(_input_loc(data, item["loc"], item["type"]))
        message = "required field is missing" if item["type"] == "missing" else item["msg"]
        if message not in merged.setdefault(path, []):
            merged[path].append(message)
    return [Problem(path, " or ".join(messages)) for path, messages in merged.items()]


# Keys of MindIE's shipped config.json that its parameter reference does not document.
SHIPPED_UNDOCUMENTED = ("kvPoolConfig", "async_scheduler_wait_time", "models", "layerwiseDisaggregated")


def _section_type(annotation: Any) -> tuple[type[Section] | None, bool]:
    """(section class, is a list of them) for a field annotation, or (None, False) for plain values."""
    if isinstance(annotation, type) and issubclass(annotation, Section):
        return annotation, False
    args = get_args(annotation)
    if get_origin(annotation) is list and args and isinstance(args[0], type) and issubclass(args[0], Section):
        return args[0], True
    return None, False


def unknown_field_problems(data: Any, section: type[Section] = MindIEConfig, path: tuple[Any, ...] = ()) -> list[Problem]:
    """Keys the schema does not know: typos (``maxBatchsize``) or fields of another MindIE release.

    Walks the raw JSON, so typos are reported even when other fields fail validation.
    """
    if not isinstance(data, dict):
        return []
    fields = section.model_fields
    problems = [Problem(json_path((*path, key)), "unknown field (a typo, or a field of another MindIE release?)", "warning")
                for key in data if key not in fields and not key.startswith(SHIPPED_UNDOCUMENTED)]
    for name, field in fields.items():
        child, is_list = _section_type(field.annotation)
        if child is None or name not in data:
            continue
        if is_list and isinstance(data[name], list):
            for index, item in enumerate(data[name]):
                problems += unknown_field_problems(item, child, (*path, name, index))
        elif not is_list:
            problems += unknown_field_problems(data[name], child, (*path, name))
    return problems


def cross_field_problems(config: MindIEConfig) -> list[Problem]:
    """The documented rules that relate several fields (each reported at the field to change)."""
    problems: list[Problem] = []

    def rule(ok: bool, path: str, message: str, severity: Literal["error", "warning"] = "error") -> None:
        if not ok:
            problems.append(Problem(path, message, severity))

    server, backend = config.ServerConfig, config.BackendConfig
    deploy, schedule = backend.ModelDeployConfig, backend.ScheduleConfig
    sc, dc = "BackendConfig.ScheduleConfig", "BackendConfig.ModelDeployConfig"

    for field in ("ipAddress", "managementIpAddress"):
        rule(getattr(server, field) not in ("0.0.0.0", "::") or server.allowAllZeroIpListening, f"ServerConfig.{field}",
             "binding to all interfaces needs allowAllZeroIpListening=true (MindIE refuses it otherwise)")
    rule(server.httpsEnabled, "ServerConfig.httpsEnabled",
         "TLS is off: requests and answers (patient data) travel in clear text", "warning")

    rule(deploy.maxInputTokenLen < deploy.maxSeqLen, f"{dc}.maxInputTokenLen",
         f"{deploy.maxInputTokenLen} must be below maxSeqLen {deploy.maxSeqLen} (MindIE uses min(it, maxSeqLen - 1))")
    rule(schedule.maxPrefillTokens >= deploy.maxInputTokenLen, f"{sc}.maxPrefillTokens",
         f"{schedule.maxPrefillTokens} is below maxInputTokenLen {deploy.maxInputTokenLen}")
    rule(schedule.maxPrefillBatchSize <= schedule.maxBatchSize, f"{sc}.maxPrefillBatchSize",
         f"{schedule.maxPrefillBatchSize} exceeds maxBatchSize {schedule.maxBatchSize}")
    rule(schedule.maxIterTimes <= deploy.maxSeqLen, f"{sc}.maxIterTimes",
         f"{schedule.maxIterTimes} exceeds maxSeqLen {deploy.maxSeqLen}")
    rule(schedule.maxPreemptCount <= schedule.maxBatchSize, f"{sc}.maxPreemptCount",
         f"{schedule.maxPreemptCount} exceeds maxBatchSize {schedule.maxBatchSize}")
    rule(schedule.maxN <= schedule.maxBatchSize, f"{sc}.maxN", f"{schedule.maxN} exceeds maxBatchSize {schedule.maxBatchSize}")
    rule(schedule.cacheBlockSize == 128 or schedule.cacheBlockSize % 16 == 0, f"{sc}.cacheBlockSize",
         f"{schedule.cacheBlockSize} must be 128 or a multiple of 16")
    for i, model in enumerate(deploy.ModelConfig):
        rule(model.cpuMemSize > 0 or schedule.maxPreemptCount == 0, f"{dc}.ModelConfig[{i}].cpuMemSize",
             f"must be > 0 when maxPreemptCount is {schedule.maxPreemptCount} (preempted KV is swapped to host memory)")
        rule(model.npuMemSize != 0, f"{dc}.ModelConfig[{i}].npuMemSize", "must be -1 (automatic) or a size in GB > 0")
        rule(not model.trustRemoteCode, f"{dc}.ModelConfig[{i}].trustRemoteCode",
             "runs Python code shipped with the weights; Baichuan-M1 does not need it", "warning")

    if not backend.multiNodesInferEnabled:
        devices = backend.npuDeviceIds
        rule(len(devices) == backend.modelInstanceNumber, "BackendConfig.npuDeviceIds",
             f"{len(devices)} NPU sets for modelInstanceNumber {backend.modelInstanceNumber}")
        seen: dict[int, int] = {}
        for i, ids in enumerate(devices):
            for world_index, model in enumerate(deploy.ModelConfig):
                rule(len(ids) == model.worldSize, f"BackendConfig.npuDeviceIds[{i}]",
                     f"{len(ids)} NPUs but ModelConfig[{world_index}].worldSize is {model.worldSize}")
            for npu in ids:
                rule(npu not in seen, f"BackendConfig.npuDeviceIds[{i}]",
                     f"NPU {npu} is also used by instance {seen.get(npu)}")
                seen.setdefault(npu, i)
    return problems


def parse_config(data: Any) -> tuple[MindIEConfig | None, list[Problem]]:
    """Validate decoded JSON: the typed model (None when types or ranges fail) and every problem found."""
    unknown = unknown_field_problems(data)
    try:
        config = MindIEConfig.model_validate(data)
    except ValidationError as exc:
        return None, validation_problems(data, exc) + unknown
    return config, unknown + cross_field_problems(config)
