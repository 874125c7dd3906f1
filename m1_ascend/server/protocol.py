"""OpenAI request bodies (strictly typed) and the response / stream-chunk shapes we send back.

Requests are validated in pydantic strict mode with unknown fields forbidden, as OpenAI does, so a
``"max_tokens": "10"`` or a misspelt ``"temprature"`` is a 400 naming the field instead of a
silently ignored setting. OpenAI parameters we cannot honour (``n > 1``, penalties, logprobs)
are accepted only at their neutral values. The vLLM extensions ``top_k``, ``repetition_penalty``,
``ignore_eos`` and ``stop_token_ids`` are accepted too (the openai client sends them via
``extra_body``).
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .errors import ApiError

MAX_STOP_STRINGS = 4
SEED_MAX = 2**63 - 1
FinishReason = Literal["stop", "length", "abort"]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class StreamOptions(_Strict):
    include_usage: bool = False


class ChatMessage(_Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: str
    name: str | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _text_parts(cls, value: Any) -> Any:
        """OpenAI content-part lists are accepted when every part is text; they are joined."""
        if not isinstance(value, list):
            return value
        texts = []
        for part in value:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise ValueError("content parts must be {'type': 'text', 'text': <string>}; "
                                 "this model reads text only")
            texts.append(part["text"])
        return "".join(texts)

    def as_template_message(self) -> dict[str, str]:
        # OpenAI's newer clients say "developer" for the system prompt.
        return {"role": "system" if self.role == "developer" else self.role, "content": self.content}


class GenerationRequest(_Strict):
    """Fields common to both endpoints."""

    model: str
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0, le=2, allow_inf_nan=False)
    top_p: float = Field(1.0, gt=0, le=1, allow_inf_nan=False)
    n: int = 1
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: list[str] = Field(default_factory=list)
    seed: int | None = Field(None, ge=0, le=SEED_MAX)
    user: str | None = None
    presence_penalty: float = Field(0.0, allow_inf_nan=False)
    frequency_penalty: float = Field(0.0, allow_inf_nan=False)
    # vLLM extensions.
    top_k: int = Field(-1, ge=-1)
    repetition_penalty: float = Field(1.0, gt=0, allow_inf_nan=False)
    ignore_eos: bool = False
    stop_token_ids: list[int] = Field(default_factory=list)

    @field_validator("stop", mode="before")
    @classmethod
    def _stop_list(cls, value: Any) -> Any:
        if value is None:
            return []
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or len(value) > MAX_STOP_STRINGS:
            raise ValueError(f"stop must be a string or a list of at most {MAX_STOP_STRINGS} strings")
        if any(isinstance(s, str) and not s for s in value):
            raise ValueError("stop strings must not be empty")
        return value

    def check_supported(self) -> None:
        """OpenAI parameters that are valid but that this server only has at their neutral value."""
        if self.n != 1:
            raise ApiError(400, "Only n=1 is supported; send one request per completion.", param="n")
        for name in ("presence_penalty", "frequency_penalty"):
            if getattr(self, name) != 0:
                raise ApiError(400, f"{name} is not supported; use repetition_penalty (vLLM extension).", param=name)

    @property
    def include_usage_in_stream(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage


class ChatCompletionRequest(GenerationRequest):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = None

    def check_supported(self) -> None:
        super().check_supported()
        if self.logprobs or self.top_logprobs:
            raise ApiError(400, "logprobs are not supported by this server.", param="logprobs")

    @property
    def requested_max_tokens(self) -> int | None:
        # The newer OpenAI name wins when both are sent.
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


class CompletionRequest(GenerationRequest):
    prompt: str | list[int]
    max_tokens: int | None = Field(16, ge=1)  # OpenAI's default for this endpoint

    @field_validator("prompt", mode="before")
    @classmethod
    def _single_prompt(cls, value: Any) -> Any:
        if isinstance(value, list) and value and all(isinstance(p, str) for p in value):
            if len(value) != 1:
                raise ValueError("batched prompts are not supported; send one request per prompt")
            return value[0]
        if isinstance(value, list) and len(value) == 1 and isinstance(value[0], list):
            return value[0]
        if not isinstance(value, (str, list)):
            raise ValueError("prompt must be a string or a list of token ids")
        return value

    @property
    def requested_max_tokens(self) -> int | None:
        return self.max_tokens


def usage(prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> dict[str, Any]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": cached_tokens}}


class ResponseFormat:
    """Builds one endpoint's response and stream chunks; chat and completions differ only here."""

    object_name: str
    chunk_object_name: str
    id_prefix: str

    def __init__(self, request_id: str, model: str) -> None:
        self.id = f"{self.id_prefix}-{request_id}"
        self.model = model
        self.created = int(time.time())

    def _envelope(self, object_name: str, choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {"id": self.id, "object": object_name, "created": self.created, "model": self.model, "choices": choices}

    def response(self, text: str, finish_reason: str, usage_: dict[str, Any]) -> dict[str, Any]:
        body = self._envelope(self.object_name, [{"index": 0, **self._full(text), "logprobs": None,
                                                  "finish_reason": finish_reason}])
        return body | {"usage": usage_}

    def chunk(self, text: str, finish_reason: str | None = None) -> dict[str, Any]:
        return self._envelope(self.chunk_object_name, [{"index": 0, **self._delta(text), "logprobs": None,
                                                        "finish_reason": finish_reason}])

    def opening_chunks(self) -> list[dict[str, Any]]:
        """Chunks sent before any text."""
        return []

    def usage_chunk(self, usage_: dict[str, Any]) -> dict[str, Any]:
        """The extra last chunk of ``stream_options.include_usage``: no choices, just usage."""
        return self._envelope(self.chunk_object_name, []) | {"usage": usage_}

    def _full(self, text: str) -> dict[str, Any]:
        raise NotImplementedError

    def _delta(self, text: str) -> dict[str, Any]:
        raise NotImplementedError


class ChatFormat(ResponseFormat):
    object_name = "chat.completion"
    chunk_object_name = "chat.completion.chunk"
    id_prefix = "chatcmpl"

    def opening_chunks(self) -> list[dict[str, Any]]:
        opening = self.chunk("")
        opening["choices"][0]["delta"] = {"role": "assistant", "content": ""}
        return [opening]

    def _full(self, text: str) -> dict[str, Any]:
        return {"message": {"role": "assistant", "content": text}}

    def _delta(self, text: str) -> dict[str, Any]:
        return {"delta": {"content": text} if text else {}}


class CompletionFormat(ResponseFormat):
    object_name = "text_completion"
    chunk_object_name = "text_completion"
    id_prefix = "cmpl"

    def _full(self, text: str) -> dict[str, Any]:
        return {"text": text}

    def _delta(self, text: str) -> dict[str, Any]:
        return {"text": text}


def model_card(model_id: str, created: int, max_model_len: int) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": created, "owned_by": "m1-ascend",
            "max_model_len": max_model_len}
