"""OpenAI request bodies, strictly typed, with every documented field accepted by name.

Requests are validated in pydantic strict mode with unknown fields forbidden, as OpenAI does, so a
``"max_tokens": "10"`` or a misspelt ``"temprature"`` is a 400 naming the field instead of a
silently ignored setting. Every field of OpenAI's documented chat and completions bodies has a
place here: most are acted on; the ones that do not change what this server generates (``store``,
``metadata``, ``service_tier``, ...) are accepted and named back in the ``X-M1-Ignored-Fields``
response header (``IGNORED``); the few that ask for something this server cannot do (audio, web
search, ``suffix``, ...) are refused with a 400 naming the field and the reason (``check_supported``).
An explicit ``null`` means "unset" for every optional field. The vLLM extensions ``top_k``,
``repetition_penalty``, ``min_tokens``, ``ignore_eos`` and ``stop_token_ids`` are accepted too
(the openai client sends them via ``extra_body``). docs/server.md lists every field with its status.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..engine.sampling_params import MAX_ABS_LOGIT_BIAS, MAX_ABS_PENALTY, MAX_LOGPROBS
from .errors import ApiError

MAX_STOP_STRINGS = 4
MAX_N = 16
MAX_CHAT_TOP_LOGPROBS = MAX_LOGPROBS  # what the engine computes
MAX_COMPLETION_LOGPROBS = 5
SEED_MAX = 2**63 - 1
IGNORED_FIELDS_HEADER = "X-M1-Ignored-Fields"
FUNCTION_NAME_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class StreamOptions(_Strict):
    include_usage: bool | None = None
    include_obfuscation: bool | None = None  # OpenAI's padding of stream chunks; nothing to hide here


class FunctionDefinition(_Strict):
    name: str = Field(pattern=FUNCTION_NAME_PATTERN)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(_Strict):
    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(_Strict):
    name: str


class NamedToolChoice(_Strict):
    type: Literal["function"]
    function: NamedFunction


class FunctionCall(_Strict):
    name: str
    arguments: str


class ToolCall(_Strict):
    id: str
    type: Literal["function"]
    function: FunctionCall


class JsonSchemaSpec(_Strict):
    name: str = Field(pattern=FUNCTION_NAME_PATTERN)
    description: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None


class ResponseFormatRequest(_Strict):
    """``{"type": "text"}``, ``{"type": "json_object"}`` or ``{"type": "json_schema", "json_schema": {...}}``."""

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaSpec | None = None

    @model_validator(mode="after")
    def _schema_given(self) -> ResponseFormatRequest:
        if (self.type == "json_schema") != (self.json_schema is not None):
            raise ValueError("json_schema is required with type 'json_schema', and only there")
        return self


def _join_text_parts(value: Any) -> Any:
    """OpenAI content-part lists are accepted when every part is text; they are joined."""
    if not isinstance(value, list):
        return value
    texts = []
    for part in value:
        if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
            raise ValueError("content parts must be {'type': 'text', 'text': <string>}; this model reads text only")
        texts.append(part["text"])
    return "".join(texts)


class ChatMessage(_Strict):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    refusal: str | None = None  # echoed back by SDKs in assistant messages; not shown to the model

    @field_validator("content", mode="before")
    @classmethod
    def _text_parts(cls, value: Any) -> Any:
        return _join_text_parts(value)

    @model_validator(mode="after")
    def _consistent(self) -> ChatMessage:
        if self.role == "assistant":
            if self.content is None and not self.tool_calls:
                raise ValueError("an assistant message needs content or tool_calls")
        elif self.content is None:
            raise ValueError(f"a {self.role} message needs content")
        if self.tool_calls and self.role != "assistant":
            raise ValueError("only assistant messages carry tool_calls")
        if (self.role == "tool") != (self.tool_call_id is not None):
            raise ValueError("tool_call_id belongs to, and is required in, role 'tool' messages")
        return self


class GenerationRequest(_Strict):
    """Fields common to both endpoints (``None`` = unset, the default applies)."""

    # Accepted, not acted on: they do not change what is generated. Named in IGNORED_FIELDS_HEADER.
    IGNORED: ClassVar[tuple[str, ...]] = ("user",)

    model: str
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2, allow_inf_nan=False)
    top_p: float | None = Field(None, gt=0, le=1, allow_inf_nan=False)
    n: int | None = Field(None, ge=1, le=MAX_N)
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    stop: list[str] | None = None
    seed: int | None = Field(None, ge=0, le=SEED_MAX)
    user: str | None = None
    presence_penalty: float | None = Field(None, ge=-MAX_ABS_PENALTY, le=MAX_ABS_PENALTY, allow_inf_nan=False)
    frequency_penalty: float | None = Field(None, ge=-MAX_ABS_PENALTY, le=MAX_ABS_PENALTY, allow_inf_nan=False)
    logit_bias: dict[str, float] | None = None
    # vLLM extensions.
    top_k: int | None = Field(None, ge=-1)
    repetition_penalty: float | None = Field(None, gt=0, allow_inf_nan=False)
    min_tokens: int | None = Field(None, ge=0)
    ignore_eos: bool | None = None
    stop_token_ids: list[int] | None = None

    @field_validator("stop", mode="before")
    @classmethod
    def _stop_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list) and len(value) > MAX_STOP_STRINGS:
            raise ValueError(f"stop must be a string or a list of at most {MAX_STOP_STRINGS} strings")
        if isinstance(value, list) and any(isinstance(s, str) and not s for s in value):
            raise ValueError("stop strings must not be empty")
        return value

    @field_validator("logit_bias")
    @classmethod
    def _bias(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        for key, bias in (value or {}).items():
            if not key.isdigit():
                raise ValueError(f"keys are token ids as strings, got {key[:20]!r}")
            if not -MAX_ABS_LOGIT_BIAS <= bias <= MAX_ABS_LOGIT_BIAS:
                raise ValueError(f"biases are in [-100, 100], got {bias}")
        return value

    def check_supported(self) -> None:
        """Refuse documented fields this server cannot honour (400 naming the field)."""

    def ignored_fields(self) -> list[str]:
        """The ignored fields this request set (for IGNORED_FIELDS_HEADER)."""
        names = [name for name in self.IGNORED if getattr(self, name, None) is not None]
        if self.stream_options is not None and self.stream_options.include_obfuscation is not None:
            names.append("stream_options.include_obfuscation")
        return names

    @property
    def num_choices(self) -> int:
        return self.n or 1

    @property
    def streaming(self) -> bool:
        return bool(self.stream)

    @property
    def include_usage_in_stream(self) -> bool:
        return self.stream_options is not None and bool(self.stream_options.include_usage)

    @property
    def token_bias(self) -> dict[int, float]:
        return {int(k): v for k, v in (self.logit_bias or {}).items()}


def _refuse(param: str, reason: str) -> ApiError:
    return ApiError(400, f"'{param}' is not supported by this server: {reason}.", param=param, code="unsupported_parameter")


class ChatCompletionRequest(GenerationRequest):
    IGNORED: ClassVar[tuple[str, ...]] = ("user", "metadata", "store", "service_tier", "prompt_cache_key",
                                          "safety_identifier", "reasoning_effort", "verbosity", "prediction",
                                          "modalities")

    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=MAX_CHAT_TOP_LOGPROBS)
    response_format: ResponseFormatRequest | None = None
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    # Accepted and ignored (see IGNORED).
    metadata: dict[str, str] | None = None
    store: bool | None = None
    service_tier: str | None = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None
    reasoning_effort: str | None = None
    verbosity: str | None = None
    prediction: dict[str, Any] | None = None
    modalities: list[str] | None = None
    # Refused in check_supported.
    audio: dict[str, Any] | None = None
    web_search_options: dict[str, Any] | None = None
    functions: list[dict[str, Any]] | None = None
    function_call: str | dict[str, Any] | None = None

    def check_supported(self) -> None:
        if self.audio is not None or (self.modalities is not None and set(self.modalities) - {"text"}):
            raise _refuse("audio" if self.audio is not None else "modalities", "this model reads and writes text only")
        if self.web_search_options is not None:
            raise _refuse("web_search_options", "the server has no web access (on-premises deployment)")
        for name in ("functions", "function_call"):
            if getattr(self, name) is not None:
                raise _refuse(name, "it is OpenAI's deprecated form; send 'tools' and 'tool_choice'")
        if self.top_logprobs is not None and not self.logprobs:
            raise ApiError(400, "'top_logprobs' needs 'logprobs': true.", param="top_logprobs", code="invalid_value")
        if isinstance(self.tool_choice, NamedToolChoice) or self.tool_choice == "required":
            if not self.tools:
                raise ApiError(400, "'tool_choice' names or requires a tool but 'tools' is empty.",
                               param="tool_choice", code="invalid_value")
        if isinstance(self.tool_choice, NamedToolChoice):
            if self.tool_choice.function.name not in {t.function.name for t in self.tools or []}:
                raise ApiError(400, f"'tool_choice' names the function {self.tool_choice.function.name!r}, "
                                    "which is not in 'tools'.", param="tool_choice", code="invalid_value")

    @property
    def requested_max_tokens(self) -> int | None:
        # The newer OpenAI name wins when both are sent.
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens

    @property
    def num_logprobs(self) -> int | None:
        return (self.top_logprobs or 0) if self.logprobs else None

    @property
    def effective_tool_choice(self) -> str | NamedToolChoice:
        """OpenAI's defaults: ``auto`` when tools are given, ``none`` without."""
        if self.tool_choice is not None:
            return self.tool_choice
        return "auto" if self.tools else "none"


class CompletionRequest(GenerationRequest):
    prompt: str | list[str] | list[int] | list[list[int]]
    max_tokens: int | None = Field(16, ge=1)  # OpenAI's default for this endpoint
    echo: bool | None = None
    logprobs: int | None = Field(None, ge=0, le=MAX_COMPLETION_LOGPROBS)
    best_of: int | None = Field(None, ge=1, le=MAX_N)
    suffix: str | None = None

    @field_validator("prompt")
    @classmethod
    def _non_empty_batch(cls, value: Any) -> Any:
        if isinstance(value, list) and not value:
            raise ValueError("prompt must not be an empty list")
        return value

    def check_supported(self) -> None:
        if self.suffix:
            raise _refuse("suffix", "fill-in-the-middle is not a Baichuan-M1 capability")
        if self.best_of is not None and self.best_of != self.num_choices:
            raise _refuse("best_of", "send n choices and pick among them (best_of must equal n)")

    @property
    def prompts(self) -> list[str | list[int]]:
        """The batch: one entry per prompt (a string or a token-id list)."""
        prompt = self.prompt
        if isinstance(prompt, str):
            return [prompt]
        if all(isinstance(p, int) for p in prompt):
            return [prompt]  # type: ignore[list-item]
        return list(prompt)  # type: ignore[arg-type]

    @property
    def requested_max_tokens(self) -> int | None:
        return self.max_tokens

    @property
    def num_logprobs(self) -> int | None:
        return self.logprobs


class TokenizeRequest(_Strict):
    """vLLM's ``POST /tokenize``: a text prompt or chat messages."""

    model: str
    prompt: str | None = None
    messages: list[ChatMessage] | None = None
    add_generation_prompt: bool | None = None
    add_special_tokens: bool | None = None  # Baichuan-M1 adds none to plain text; accepted for vLLM clients

    @model_validator(mode="after")
    def _one_input(self) -> TokenizeRequest:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give either prompt or messages")
        return self


class DetokenizeRequest(_Strict):
    model: str
    tokens: list[int]


def model_card(model_id: str, created: int, max_model_len: int) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": created, "owned_by": "m1-ascend",
            "max_model_len": max_model_len}
