"""The FastAPI application: OpenAI routes, health, metrics, and the engine's lifecycle.

The model loads in a worker thread after the server starts listening, so ``/health`` can say
503 ("loading") to an orchestrator meanwhile; ``/v1/*`` answers 503 until it is ready.

Logging rule (patient data): nothing here logs request or response content. Handlers log only
ids, counts and error types.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ValidationError

from .async_engine import AsyncEngine
from .audit import AuditLog, AuditRecord
from .auth import ApiKeyStore
from .errors import ApiError, from_validation_error, install_error_handlers
from .generation import admit, build_sampling_params, respond_once, respond_streaming
from .metrics import ServerMetrics
from .middleware import RequestLifecycleMiddleware
from .models import ModelRegistry, ServedModel
from .protocol import ChatCompletionRequest, ChatFormat, CompletionFormat, CompletionRequest, ResponseFormat, model_card
from .settings import ServerSettings
from .startup import LoadedModel, load_model

logger = logging.getLogger(__name__)

Loader = Callable[[ServerSettings], LoadedModel]


class ServerState:
    """What the routes share: settings, security, observability, and (once loaded) the model."""

    def __init__(self, settings: ServerSettings, loader: Loader) -> None:
        self.settings = settings
        self.loader = loader
        self.metrics = ServerMetrics()
        self.keys = ApiKeyStore.from_settings(settings)
        self.audit = AuditLog(settings.audit_log, settings.audit_log_text) if settings.audit_log else None
        self.loaded: LoadedModel | None = None
        self.engine: AsyncEngine | None = None
        self.registry: ModelRegistry | None = None
        self.load_error: str | None = None
        self.shutting_down = False
        # Called with a message when the server cannot go on (the model failed to load).
        self.on_fatal: Callable[[str], None] = lambda message: None

    async def load(self) -> None:
        try:
            loaded = await asyncio.to_thread(self.loader, self.settings)
        except Exception as exc:  # the message names the file or setting; it holds no request data
            self.load_error = f"loading the model failed: {type(exc).__name__}: {exc}"
            logger.error("%s", self.load_error)
            self.on_fatal(self.load_error)
            return
        engine = AsyncEngine(loaded.engine, self.metrics, self.settings.max_num_seqs, self.settings.max_queue)
        engine.start()
        self.loaded, self.engine = loaded, engine
        self.registry = ModelRegistry([loaded.served, *loaded.adapters])
        logger.info("ready: serving %r", loaded.served.id)

    def begin_shutdown(self) -> None:
        """Stop admitting; in-flight requests get ``shutdown_grace_seconds`` before they are aborted."""
        self.shutting_down = True
        if self.engine is not None:
            self.engine.draining = True
            grace = self.settings.shutdown_grace_seconds
            logger.info("shutting down: %d request(s) in flight get up to %.1f s", self.engine.num_in_flight, grace)
            asyncio.get_running_loop().call_later(grace, self.engine.abort_all)

    async def close(self) -> None:
        if self.engine is not None:
            await self.engine.stop()
        if self.audit is not None:
            self.audit.close()

    def health(self) -> tuple[int, dict[str, Any]]:
        if self.load_error is not None:
            return 503, {"status": "error", "error": self.load_error}
        if self.engine is None:
            return 503, {"status": "loading"}
        if self.engine.failure is not None:
            return 503, {"status": "error", "error": self.engine.failure}
        if self.shutting_down:
            return 503, {"status": "shutting_down"}
        assert self.loaded is not None
        return 200, {"status": "ok", "model": self.loaded.served.id}


def _state(request: Request) -> ServerState:
    return request.app.state.server


def _record(request: Request) -> AuditRecord:
    return request.state.audit


def authenticate(request: Request) -> None:
    _record(request).key_id = _state(request).keys.authenticate(request.headers.get("authorization"))


def ready_state(request: Request) -> ServerState:
    state = _state(request)
    if state.engine is None or state.registry is None:
        status, body = state.health()
        raise ApiError(503, f"The model is not ready ({body['status']}); poll GET /health.", code="not_ready",
                       headers={"Retry-After": str(state.settings.retry_after_seconds)})
    return state


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


async def read_json_object(request: Request, limit: int) -> dict[str, Any]:
    """The body as a JSON object, with a 4xx naming the problem for oversize, non-UTF-8 or malformed input."""
    too_big = ApiError(413, f"Request body is larger than the server's limit of {limit} bytes.", code="body_too_large")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_big
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_big
        chunks.append(chunk)
    try:
        text = b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, f"Request body is not valid UTF-8 (invalid byte at offset {exc.start}).",
                       code="invalid_encoding") from None
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except ValueError as exc:
        detail = f"{exc.msg} at line {exc.lineno} column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else exc
        raise ApiError(400, f"The request body is not valid JSON: {detail}.", code="invalid_json") from None
    if not isinstance(data, dict):
        raise ApiError(400, "The request body must be a JSON object.", code="invalid_json")
    return data


async def parse_body(request: Request, model: type[BaseModel], state: ServerState) -> tuple[Any, ServedModel]:
    """The validated body and the model it names (404 before any tokenizing work)."""
    data = await read_json_object(request, state.settings.max_body_bytes)
    try:
        body = model.model_validate(data)
    except ValidationError as exc:
        raise from_validation_error(exc) from None
    record = _record(request)
    record.model, record.stream = body.model, body.stream
    body.check_supported()
    assert state.registry is not None
    return body, state.registry.resolve(body.model)


def _tokenizer(state: ServerState) -> Any:
    assert state.loaded is not None
    tokenizer = state.loaded.engine.tokenizer
    if tokenizer is None:
        raise ApiError(400, "This model has no tokenizer: use /v1/completions with a token-id prompt.",
                       code="no_tokenizer")
    return tokenizer


async def _generate(request: Request, state: ServerState, body: Any, served: ServedModel, prompt_ids: list[int],
                    fmt: ResponseFormat, prompt_param: str) -> Response:
    assert state.engine is not None and state.loaded is not None
    settings, record = state.settings, _record(request)
    record.prompt_tokens = len(prompt_ids)
    if state.audit is not None and state.audit.include_text and state.loaded.engine.tokenizer is not None:
        record.prompt_text = state.loaded.engine.tokenizer.decode(prompt_ids, skip_special_tokens=False)
    params = build_sampling_params(body, len(prompt_ids), served.max_model_len, prompt_param)
    stream = await admit(state.engine, state.metrics, settings.retry_after_seconds, request.state.request_id,
                         prompt_ids, params, prompt_param, served.adapter)
    include_text = state.audit is not None and state.audit.include_text
    if body.stream:
        return respond_streaming(stream, fmt, body.include_usage_in_stream, record, include_text)
    return await respond_once(request, stream, fmt, record, include_text, settings.retry_after_seconds)


router = APIRouter(prefix="/v1", dependencies=[Depends(authenticate)])


@router.get("/models")
async def list_models(request: Request) -> dict[str, Any]:
    state = ready_state(request)
    assert state.registry is not None
    return {"object": "list", "data": [model_card(m.id, m.created, m.max_model_len) for m in state.registry.list()]}


@router.post("/chat/completions")
async def chat_completions(request: Request) -> Response:
    state = ready_state(request)
    body, served = await parse_body(request, ChatCompletionRequest, state)
    try:
        prompt_ids = _tokenizer(state).apply_chat_template([m.as_template_message() for m in body.messages])
    except ValueError as exc:  # wrong role order, template failure: the message names the message index
        raise ApiError(400, f"Invalid messages: {exc}.", param="messages", code="invalid_messages") from None
    fmt = ChatFormat(request.state.request_id, body.model)
    return await _generate(request, state, body, served, prompt_ids, fmt, "messages")


@router.post("/completions")
async def completions(request: Request) -> Response:
    state = ready_state(request)
    body, served = await parse_body(request, CompletionRequest, state)
    prompt_ids = _tokenizer(state).encode(body.prompt) if isinstance(body.prompt, str) else list(body.prompt)
    fmt = CompletionFormat(request.state.request_id, body.model)
    return await _generate(request, state, body, served, prompt_ids, fmt, "prompt")


def create_app(settings: ServerSettings, loader: Loader = load_model) -> FastAPI:
    """The app for ``settings``; ``loader`` builds the engine (tests may pass their own)."""
    state = ServerState(settings, loader)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loading = asyncio.create_task(state.load())
        try:
            yield
        finally:
            loading.cancel()
            await state.close()

    app = FastAPI(title="m1-ascend", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.server = state
    install_error_handlers(app)
    app.include_router(router)

    @app.get("/health")
    async def health() -> JSONResponse:
        status, body = state.health()
        return JSONResponse(body, status_code=status)

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(RequestLifecycleMiddleware, metrics=state.metrics, audit=state.audit)
    return app
