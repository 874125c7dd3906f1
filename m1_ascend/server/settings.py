"""Server settings from four layers: defaults < config file < ``M1_ASCEND_*`` environment < CLI flags.

One pydantic model lists every setting once; the CLI flags, the environment variable names and
the config-file keys are all derived from its field names, so the three can never drift apart:
field ``max_queue`` is ``--max-queue``, ``M1_ASCEND_MAX_QUEUE`` and ``max_queue:`` (or
``max-queue:``) in the YAML/JSON file named by ``--config`` / ``M1_ASCEND_CONFIG``.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

ENV_PREFIX = "M1_ASCEND_"
CONFIG_ENV = ENV_PREFIX + "CONFIG"


class SettingsError(ValueError):
    """A setting has a value the server cannot start with; the message names the setting and its source."""


class ServerSettings(BaseModel):
    """Everything ``m1-ascend serve`` can be told. Descriptions double as the CLI help."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # What to serve.
    model: str | None = Field(None, description="checkpoint directory; default: the embedded demo checkpoint "
                                                "(built on first use)")
    served_model_name: str | None = Field(None, description="model id clients send in 'model'; "
                                                            "default: the checkpoint directory name")
    device: Literal["cpu", "npu", "auto"] = Field("auto", description="where the model runs")
    dtype: Literal["float32", "bfloat16", "float16"] | None = Field(None, description="weight and KV dtype; "
                                                                                      "default: the engine's choice")
    lora_adapters: dict[str, str] = Field({}, description="LoRA adapters served unmerged, each as its own model id: "
                                                          "'name=DIR,name=DIR' (m1-ascend finetune outputs)")
    # Engine capacity.
    max_num_seqs: int = Field(64, ge=1, description="sequences decoded together in one step")
    max_num_batched_tokens: int = Field(2048, ge=1, description="tokens per engine step (prefill chunk budget)")
    block_size: int = Field(128, ge=1, description="tokens per KV-cache block")
    kv_cache_memory: int | None = Field(None, ge=1, description="bytes reserved for the KV cache; "
                                                                "default: the engine's memory plan")
    enable_prefix_caching: bool = Field(True, description="reuse KV blocks of shared prompt prefixes")
    enforce_eager: bool | None = Field(None, description="run every step eagerly (no decode graphs); default: "
                                                         "graphs on an NPU, eager on the CPU")
    max_queue: int = Field(256, ge=0, description="requests allowed to wait beyond the max-num-seqs running ones; "
                                                  "more get 429")
    retry_after_seconds: int = Field(1, ge=1, description="Retry-After value sent with 429")
    engine_stall_seconds: float = Field(120.0, gt=0, description="/health answers 503 'stalled' when the engine "
                                                                 "has made no progress this long while requests "
                                                                 "are in flight (a hung device op); well above the "
                                                                 "longest legitimate step")
    # Network and security.
    host: str = Field("127.0.0.1", description="address to bind; anything but loopback exposes the server")
    port: int = Field(8000, ge=0, le=65535, description="TCP port")
    api_key: SecretStr | None = Field(None, description="single accepted Bearer key (prefer --api-keys-file or "
                                                        "the environment: command lines are visible in ps)")
    api_keys_file: Path | None = Field(None, description="file of '<key-id> <key>' lines; the key id goes to "
                                                         "the audit log, the key never does")
    tls_cert: Path | None = Field(None, description="PEM certificate; with --tls-key serves HTTPS")
    tls_key: Path | None = Field(None, description="PEM private key for --tls-cert")
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024, description="largest accepted request body")
    # Operations.
    audit_log: Path | None = Field(None, description="JSON-lines audit log (appended); default: no audit log")
    audit_log_text: bool = Field(False, description="DEBUG ONLY: also write prompt and completion text to the "
                                                    "audit log (patient data!)")
    shutdown_grace_seconds: float = Field(30.0, ge=0, description="on SIGTERM, how long in-flight requests may "
                                                                  "run before they are ended with "
                                                                  "finish_reason 'abort'")
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="application log level")
    allow_weight_mismatch: bool = Field(False, description="start even when the weights differ from their SHA256SUMS "
                                                           "manifest (logged as a warning; only after review)")

    @field_validator("lora_adapters", mode="before")
    @classmethod
    def _parse_adapters(cls, value: Any) -> Any:
        """The flag and environment form ``name=DIR,name=DIR``; config files may give a mapping."""
        if not isinstance(value, str):
            return value
        pairs = [item.partition("=") for item in value.split(",") if item.strip()]
        if any(not sep or not name.strip() or not path.strip() for name, sep, path in pairs):
            raise ValueError(f"expected name=DIR[,name=DIR...], got {value!r}")
        return {name.strip(): path.strip() for name, _, path in pairs}

    @model_validator(mode="after")
    def _consistent(self) -> ServerSettings:
        for name, path in self.lora_adapters.items():
            if not (Path(path).expanduser() / "adapter_config.json").is_file():
                raise ValueError(f"lora_adapters: {name}={path} is not a LoRA adapter directory (no adapter_config.json)")
        if self.api_key is not None and self.api_keys_file is not None:
            raise ValueError("give either api_key or api_keys_file, not both")
        if self.api_key is not None and not self.api_key.get_secret_value().strip():
            raise ValueError("api_key is empty")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key must be given together")
        for name in ("api_keys_file", "tls_cert", "tls_key"):
            path = getattr(self, name)
            if path is not None and not path.is_file():
                raise ValueError(f"{name}: no such file {path}")
        if self.model is not None and not Path(self.model).expanduser().is_dir():
            raise ValueError(f"model: no such directory {self.model}")
        return self

    @property
    def auth_enabled(self) -> bool:
        return self.api_key is not None or self.api_keys_file is not None

    @property
    def exposed(self) -> bool:
        """Whether the bind address reaches beyond this machine."""
        if self.host == "localhost":
            return False
        try:
            return not ipaddress.ip_address(self.host).is_loopback
        except ValueError:  # a host name: assume it resolves to something reachable
            return True


def field_env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def _read_config_file(path: Path) -> dict[str, Any]:
    """YAML or JSON (JSON is YAML) mapping of setting names, dashes or underscores."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SettingsError(f"config file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise SettingsError(f"config file {path}: not valid YAML/JSON ({str(exc).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingsError(f"config file {path}: expected a mapping of setting names to values")
    values = {str(key).replace("-", "_"): value for key, value in data.items()}
    unknown = sorted(set(values) - set(ServerSettings.model_fields))
    if unknown:
        raise SettingsError(f"config file {path}: unknown setting(s) {', '.join(unknown)}")
    return values


def load_settings(cli: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None,
                  config_file: str | Path | None = None) -> ServerSettings:
    """Merge the layers; ``cli`` values of None mean "not given" and fall through to lower layers."""
    environ = os.environ if environ is None else environ
    layers: list[tuple[str, dict[str, Any]]] = []
    config_file = config_file or environ.get(CONFIG_ENV)
    if config_file:
        path = Path(config_file).expanduser()
        layers.append((f"config file {path}", _read_config_file(path)))
    layers.append(("environment", {name: environ[field_env_name(name)] for name in ServerSettings.model_fields
                                   if field_env_name(name) in environ}))
    layers.append(("command line", {k: v for k, v in (cli or {}).items() if v is not None}))

    merged: dict[str, Any] = {}
    source: dict[str, str] = {}
    for label, values in layers:
        for name, value in values.items():
            merged[name] = value
            source[name] = f"{field_env_name(name)} in the environment" if label == "environment" else label
    try:
        return ServerSettings(**merged)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        name = str(first["loc"][0]) if first["loc"] else ""
        where = f" (from {source[name]})" if name in source else ""
        setting = f"setting '{name}'{where}: " if name else ""
        message = first["msg"].removeprefix("Value error, ")
        raise SettingsError(f"{setting}{message}") from None
