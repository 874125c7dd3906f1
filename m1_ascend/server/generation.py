"""From a validated request to an answer: sampling settings, admission, and the two ways of replying.

Shared by both generation endpoints; what differs between them (the JSON shapes) comes in as a
``ResponseFormat``. Every path ends the engine request: a finished stream, a client that
disconnected (``abort`` frees its KV blocks at once) or a cancelled handler.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.types import Receive, Scope, Send

from ..engine.errors import RequestRejected
from ..engine.outputs import RequestOutput
from ..engine.sampling_params import SamplingParams
from .async_engine import AsyncEngine, EngineUnavailable, QueueFull, RequestStream
from .audit import AuditRecord
from .errors import ApiError
from .metrics import ServerMetrics
from .protocol import GenerationRequest, ResponseFormat, usage

SSE_DONE = b"data: [DONE]\n\n"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def build_sampling_params(body: GenerationRequest, prompt_len: int, max_model_len: int,
                          prompt_param: str) -> SamplingParams:
    """Check the token budget against the context (OpenAI answers 400, it does not truncate)."""
    room = max_model_len - prompt_len
    if room <= 0:
        raise ApiError(400, f"This model's maximum context length is {max_model_len} tokens, and your prompt has "
                            f"{prompt_len} tokens (at least one must be left for the completion). "
                            f"Shorten the prompt.", param=prompt_param, code="context_length_exceeded")
    requested = body.requested_max_tokens
    if requested is not None and requested > room:
        raise ApiError(400, f"This model's maximum context length is {max_model_len} tokens. However, you requested "
                            f"{prompt_len + requested} tokens ({prompt_len} in the prompt, {requested} for the "
                            f"completion). Reduce the prompt or max_tokens.", param="max_tokens",
                       code="context_length_exceeded")
    try:
        return SamplingParams(temperature=body.temperature, top_p=body.top_p, top_k=body.top_k,
                              repetition_penalty=body.repetition_penalty,
                              max_tokens=requested if requested is not None else room, stop=body.stop,
                              stop_token_ids=body.stop_token_ids, seed=body.seed, ignore_eos=body.ignore_eos)
    except ValueError as exc:
        raise ApiError(400, str(exc), code="invalid_value") from None


async def admit(engine: AsyncEngine, metrics: ServerMetrics, retry_after: int, request_id: str,
                prompt_ids: list[int], params: SamplingParams, prompt_param: str,
                adapter: str | None = None) -> RequestStream:
    try:
        return await engine.submit(request_id, prompt_ids, params, adapter)
    except QueueFull as exc:
        metrics.rejected.inc()
        raise ApiError(429, f"The server is at capacity ({exc}); retry after {retry_after} s.",
                       code="queue_full", headers={"Retry-After": str(retry_after)}) from None
    except EngineUnavailable as exc:
        raise ApiError(503, f"The server is not accepting requests: {exc}.", code="unavailable",
                       headers={"Retry-After": str(retry_after)}) from None
    except RequestRejected as exc:
        raise ApiError(400, f"{exc}.", param=prompt_param, code="invalid_prompt") from None


def _audit_result(record: AuditRecord, stream: RequestStream, include_text: bool) -> None:
    """What the client got: the last output it was sent; unfinished means we aborted it (client gone)."""
    last = stream.last
    record.first_token_at = stream.first_token_at
    record.finish_reason = last.finish_reason if last is not None and last.finished else "abort"
    record.completion_tokens = len(last.token_ids) if last is not None else 0
    if last is not None:
        record.cached_tokens = last.num_cached_tokens
        if include_text:
            record.completion_text = last.text


def _usage(output: RequestOutput) -> dict[str, Any]:
    return usage(len(output.prompt_token_ids), len(output.token_ids), output.num_cached_tokens)


async def _abort_on_disconnect(request: Request, stream: RequestStream) -> None:
    """Wait for the client to go away (the body is already read, so the next message says so)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
    stream.abort()


async def respond_once(request: Request, stream: RequestStream, fmt: ResponseFormat, record: AuditRecord,
                       include_text: bool, retry_after: int) -> JSONResponse:
    """Non-streaming: wait for the end, watching for a disconnect meanwhile."""
    watcher = asyncio.create_task(_abort_on_disconnect(request, stream))
    try:
        final = await stream.result()
    finally:
        watcher.cancel()
        stream.abort()
        _audit_result(record, stream, include_text)
    if final.finish_reason == "abort":
        raise ApiError(503, "Generation was aborted (the server is shutting down or the engine failed); retry.",
                       code="aborted", headers={"Retry-After": str(retry_after)})
    return JSONResponse(fmt.response(final.text, final.finish_reason, _usage(final)))


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


async def _events(stream: RequestStream, fmt: ResponseFormat, include_usage: bool, record: AuditRecord,
                  include_text: bool) -> AsyncIterator[bytes]:
    try:
        for chunk in fmt.opening_chunks():
            yield _sse(chunk)
        sent = 0  # the engine's text only ever grows, so a delta is what lies past the sent length
        async for output in stream:
            delta, sent = output.text[sent:], len(output.text)
            if output.finished:
                yield _sse(fmt.chunk(delta, output.finish_reason))
                if include_usage:
                    yield _sse(fmt.usage_chunk(_usage(output)))
            elif delta:
                yield _sse(fmt.chunk(delta))
        yield SSE_DONE
    finally:
        stream.abort()
        _audit_result(record, stream, include_text)


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


def respond_streaming(stream: RequestStream, fmt: ResponseFormat, include_usage: bool, record: AuditRecord,
                      include_text: bool) -> StreamingResponse:
    return _EngineStreamingResponse(_events(stream, fmt, include_usage, record, include_text),
                                    media_type="text/event-stream", headers=SSE_HEADERS)
