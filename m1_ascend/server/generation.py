"""From a validated request to an answer: sampling settings, admission of every choice, and the two ways of replying.

A request becomes one engine request per choice: ``n`` choices of each prompt (batched prompts on
``/v1/completions`` are prompt-major: choice ``i * n + j`` is choice ``j`` of prompt ``i``). The
first choice of a prompt leads; its siblings start once its prompt is computed, from its blocks
in the prefix cache, and each draws from its own seed stream (``seed + j``). Every path ends every
engine request: a finished stream, a client that disconnected (``abort`` frees the KV blocks at
once) or a cancelled handler.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.types import Receive, Scope, Send

from ..engine.errors import RequestRejected
from ..engine.outputs import RequestOutput
from ..engine.sampling_params import SamplingParams
from ..engine.structured_output import GrammarSpec
from .async_engine import AsyncEngine, EngineUnavailable, QueueFull, RequestStream
from .audit import AuditRecord
from .errors import ApiError
from .metrics import ServerMetrics
from .protocol import SEED_MAX, GenerationRequest
from .responses import ChoiceCursor, ResponseFormat, usage

SSE_DONE = b"data: [DONE]\n\n"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@dataclass
class Choice:
    """One engine request of an HTTP request."""

    index: int
    prompt_ids: list[int]
    params: SamplingParams
    leader: int | None = None  # index of the choice whose cached prompt this one starts from
    stream: RequestStream | None = None


def build_sampling_params(body: GenerationRequest, prompt_len: int, max_model_len: int, prompt_param: str,
                          grammar: GrammarSpec | None = None, logprobs: int | None = None,
                          prompt_logprobs: int | None = None) -> SamplingParams:
    """Check the token budget against the context (OpenAI answers 400, it does not truncate); defaults for nulls."""
    room = max_model_len - prompt_len
    if room <= 0:
        raise ApiError(400, f"This model's maximum context length is {max_model_len} tokens, and your prompt has "
                            f"{prompt_len} tokens (at least one must be left for the completion). "
                            f"Shorten the prompt.", param=prompt_param, code="context_length_exceeded")
    requested = body.requested_max_tokens  # type: ignore[attr-defined]
    if requested is not None and requested > room:
        raise ApiError(400, f"This model's maximum context length is {max_model_len} tokens. However, you requested "
                            f"{prompt_len + requested} tokens ({prompt_len} in the prompt, {requested} for the "
                            f"completion). Reduce the prompt or max_tokens.", param="max_tokens",
                       code="context_length_exceeded")
    max_tokens = requested if requested is not None else room
    try:
        return SamplingParams(
            temperature=1.0 if body.temperature is None else body.temperature,
            top_p=1.0 if body.top_p is None else body.top_p, top_k=-1 if body.top_k is None else body.top_k,
            repetition_penalty=body.repetition_penalty or 1.0, presence_penalty=body.presence_penalty or 0.0,
            frequency_penalty=body.frequency_penalty or 0.0, logit_bias=body.token_bias, max_tokens=max_tokens,
            min_tokens=min(body.min_tokens or 0, max_tokens), stop=body.stop, stop_token_ids=body.stop_token_ids,
            seed=body.seed, ignore_eos=bool(body.ignore_eos), grammar=grammar, logprobs=logprobs,
            prompt_logprobs=prompt_logprobs)
    except ValueError as exc:
        raise ApiError(400, str(exc), code="invalid_value") from None


def fan_out(prompts: list[list[int]], params: list[SamplingParams], n: int) -> list[Choice]:
    """``n`` choices per prompt, prompt-major; choice ``j`` of a seeded request uses ``seed + j``."""
    choices = []
    for prompt, base in zip(prompts, params, strict=True):
        leader = len(choices)
        for j in range(n):
            seed = None if base.seed is None else (base.seed + j) % (SEED_MAX + 1)
            own = dataclasses.replace(base, seed=seed)
            choices.append(Choice(len(choices), prompt, own, None if j == 0 else leader))
    return choices


async def admit(engine: AsyncEngine, metrics: ServerMetrics, retry_after: int, request_id: str,
                choices: list[Choice], prompt_param: str, adapter: str | None = None) -> None:
    """Submit every choice, or none: a refusal of one aborts the ones already admitted."""
    def engine_id(index: int) -> str:
        return request_id if len(choices) == 1 else f"{request_id}-{index}"

    try:
        for choice in choices:
            leader = engine_id(choice.leader) if choice.leader is not None else None
            choice.stream = await engine.submit(engine_id(choice.index), choice.prompt_ids, choice.params, adapter,
                                                leader)
    except BaseException as exc:
        for choice in choices:
            if choice.stream is not None:
                choice.stream.abort()
        if isinstance(exc, QueueFull):
            metrics.rejected.inc()
            raise ApiError(429, f"The server is at capacity ({exc}); retry after {retry_after} s.",
                           code="queue_full", headers={"Retry-After": str(retry_after)}) from None
        if isinstance(exc, EngineUnavailable):
            raise ApiError(503, f"The server is not accepting requests: {exc}.", code="unavailable",
                           headers={"Retry-After": str(retry_after)}) from None
        if isinstance(exc, RequestRejected):
            raise ApiError(400, f"{exc}.", param=prompt_param, code="invalid_prompt") from None
        raise


def _streams(choices: list[Choice]) -> list[RequestStream]:
    streams = [c.stream for c in choices]
    assert all(s is not None for s in streams)
    return streams  # type: ignore[return-value]


def _usage(outputs: list[RequestOutput], choices: list[Choice]) -> dict[str, Any]:
    """Each prompt counts once however many choices it has (OpenAI's rule); completions add up."""
    leaders = [i for i, c in enumerate(choices) if c.leader is None]
    return usage(sum(len(choices[i].prompt_ids) for i in leaders), sum(len(o.token_ids) for o in outputs),
                 sum(outputs[i].num_cached_tokens for i in leaders))


def _audit_result(record: AuditRecord, choices: list[Choice], include_text: bool) -> None:
    """What the client got: the last output of each choice; unfinished means we aborted it (client gone)."""
    streams = _streams(choices)
    lasts = [s.last for s in streams]
    firsts = [s.first_token_at for s in streams if s.first_token_at is not None]
    record.first_token_at = min(firsts) if firsts else None
    reasons = [last.finish_reason if last is not None and last.finished else "abort" for last in lasts]
    record.finish_reason = reasons[0] if len(set(reasons)) == 1 else ",".join(reasons)
    record.completion_tokens = sum(len(last.token_ids) for last in lasts if last is not None)
    record.cached_tokens = sum(last.num_cached_tokens for last in lasts if last is not None)
    if include_text:
        record.completion_text = "\n".join(last.text for last in lasts if last is not None)


def _abort_all(choices: list[Choice]) -> None:
    for stream in _streams(choices):
        stream.abort()


async def _abort_on_disconnect(request: Request, choices: list[Choice]) -> None:
    """Wait for the client to go away (the body is already read, so the next message says so)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
    _abort_all(choices)


async def respond_once(request: Request, choices: list[Choice], fmt: ResponseFormat, record: AuditRecord,
                       include_text: bool, retry_after: int, headers: dict[str, str]) -> JSONResponse:
    """Non-streaming: wait for every choice to end, watching for a disconnect meanwhile."""
    watcher = asyncio.create_task(_abort_on_disconnect(request, choices))
    try:
        finals = [await stream.result() for stream in _streams(choices)]
    finally:
        watcher.cancel()
        _abort_all(choices)
        _audit_result(record, choices, include_text)
    if any(final.finish_reason == "abort" for final in finals):
        raise ApiError(503, "Generation was aborted (the server is shutting down or the engine failed); retry.",
                       code="aborted", headers={"Retry-After": str(retry_after)})
    return JSONResponse(fmt.response(finals, _usage(finals, choices)), headers=headers)


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


async def _merged(choices: list[Choice]) -> AsyncIterator[tuple[int, RequestOutput]]:
    """Outputs of all choices as they come, tagged with the choice index."""
    queue: asyncio.Queue[tuple[int, RequestOutput]] = asyncio.Queue()

    async def pump(index: int, stream: RequestStream) -> None:
        async for output in stream:
            queue.put_nowait((index, output))

    pumps = [asyncio.create_task(pump(c.index, s)) for c, s in zip(choices, _streams(choices), strict=True)]
    try:
        remaining = len(choices)
        while remaining:
            index, output = await queue.get()
            remaining -= output.finished
            yield index, output
    finally:
        for task in pumps:
            task.cancel()


async def _events(choices: list[Choice], fmt: ResponseFormat, include_usage: bool, record: AuditRecord,
                  include_text: bool) -> AsyncIterator[bytes]:
    try:
        for choice in choices:
            for chunk in fmt.opening_chunks(choice.index):
                yield _sse(chunk)
        cursors = [ChoiceCursor() for _ in choices]
        finals: list[RequestOutput | None] = [None] * len(choices)
        async for index, output in _merged(choices):
            for chunk in fmt.delta_chunks(index, output, cursors[index]):
                yield _sse(chunk)
            if output.finished:
                finals[index] = output
        if include_usage:
            yield _sse(fmt.usage_chunk(_usage([f for f in finals if f is not None], choices)))
        yield SSE_DONE
    finally:
        _abort_all(choices)
        _audit_result(record, choices, include_text)


class _EngineStreamingResponse(StreamingResponse):
    """Closes the event generator as soon as the response ends, however it ends.

    Without this, a generator interrupted by a failed send would only be finalised by the
    garbage collector; closing it here runs its cleanup (abort, audit fields) before the
    middleware writes the audit line.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.body_iterator.aclose()  # type: ignore[attr-defined]


def respond_streaming(choices: list[Choice], fmt: ResponseFormat, include_usage: bool, record: AuditRecord,
                      include_text: bool, headers: dict[str, str]) -> StreamingResponse:
    return _EngineStreamingResponse(_events(choices, fmt, include_usage, record, include_text),
                                    media_type="text/event-stream", headers=SSE_HEADERS | headers)
