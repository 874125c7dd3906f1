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
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ValidationError

from ..engine.sampling_params import SamplingParams
from ..engine.structured_output import GrammarError, GrammarSpec
from .async_engine import AsyncEngine
from .audit import AuditLog, AuditRecord
from .auth import ApiKeyStore
from .errors import ApiError, from_validation_error, install_error_handlers
from .generation import admit, build_sampling_params, fan_out, respond_once, respond_streaming
from .metrics import ServerMetrics
from .middleware import RequestLifecycleMiddleware
from .models import ModelRegistry, ServedModel
from .protocol import (
    IGNORED_FIELDS_HEADER,
    ChatCompletionRequest,
    ChatMessage,
    CompletionRequest,
    DetokenizeRequest,
    GenerationRequest,
    TokenizeRequest,
    Tool,
    model_card,
)
from .responses import ChatFormat, CompletionFormat, ResponseFormat, TokenTexts
from .settings import ServerSettings
from .startup import LoadedModel, load_model
from .tools import template_messages, tool_grammar
from .watchdog import systemd_watchdog

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
        self.token_texts: TokenTexts | None = None
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
        # Each id's text for logprobs and echo, built here rather than on the event loop by a first request.
        self.token_texts = await asyncio.to_thread(TokenTexts, loaded.engine.tokenizer, loaded.engine.config.vocab_size)
        engine = AsyncEngine(loaded.engine, self.metrics, self.settings.max_num_seqs, self.settings.max_queue)
        engine.start()
        self.metrics.engine_stall.set_function(engine.stall_seconds)
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
        stall = self.engine.stall_seconds()
        if stall > self.settings.engine_stall_seconds:
            return 503, {"status": "stalled", "stall_seconds": round(stall, 1),
                         "error": f"the engine has made no progress for {stall:.0f} s with requests in flight "
                                  f"(limit engine_stall_seconds={self.settings.engine_stall_seconds:g}); restart it"}
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
    record.model, record.stream = body.model, getattr(body, "stream", None)
    if isinstance(body, GenerationRequest):
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


def _token_texts(state: ServerState) -> TokenTexts:
    assert state.token_texts is not None  # set by load() before the server is ready
    return state.token_texts


def _chat_ids(state: ServerState, messages: list[ChatMessage], tools: list[Tool] | None,
              add_generation_prompt: bool = True) -> list[int]:
    """The prompt ids of a chat, as /v1/chat/completions and /tokenize build it; bad messages are a 400."""
    try:
        return _tokenizer(state).apply_chat_template(template_messages(messages, tools),
                                                     add_generation_prompt=add_generation_prompt)
    except ValueError as exc:  # wrong role order, template failure: the message names the message index
        raise ApiError(400, f"Invalid messages: {exc}.", param="messages", code="invalid_messages") from None


async def _compile(state: ServerState, grammar: GrammarSpec | None, param: str) -> GrammarSpec | None:
    """Compile (and cache) a grammar before admission, so a bad schema is a 400 naming the field."""
    if grammar is None:
        return None
    assert state.loaded is not None
    try:  # a large schema can take a while: off the event loop
        await asyncio.to_thread(state.loaded.engine.grammar_compiler.compile, grammar)
    except GrammarError as exc:
        raise ApiError(400, f"Invalid '{param}': {exc}.", param=param, code="invalid_schema") from None
    return grammar


def _response_grammar(body: ChatCompletionRequest) -> GrammarSpec | None:
    fmt = body.response_format
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return GrammarSpec.json_object()
    assert fmt.json_schema is not None
    return GrammarSpec.json_schema(fmt.json_schema.schema_ or {"type": "object"})


async def _generate(request: Request, state: ServerState, body: GenerationRequest, served: ServedModel,
                    prompts: list[list[int]], params: list[SamplingParams], fmt: ResponseFormat,
                    prompt_param: str) -> Response:
    assert state.engine is not None and state.loaded is not None
    settings, record = state.settings, _record(request)
    choices = fan_out(prompts, params, body.num_choices)
    record.prompt_tokens = sum(len(p) for p in prompts)
    if state.audit is not None and state.audit.include_text and state.loaded.engine.tokenizer is not None:
        record.prompt_text = "\n".join(state.loaded.engine.tokenizer.decode(p, skip_special_tokens=False)
                                       for p in prompts)
    await admit(state.engine, state.metrics, settings.retry_after_seconds, request.state.request_id, choices,
                prompt_param, served.adapter)
    ignored = body.ignored_fields()
    headers = {IGNORED_FIELDS_HEADER: ", ".join(ignored)} if ignored else {}
    include_text = state.audit is not None and state.audit.include_text
    if body.streaming:
        return respond_streaming(choices, fmt, body.include_usage_in_stream, record, include_text, headers)
    return await respond_once(request, choices, fmt, record, include_text, settings.retry_after_seconds, headers)


def _request_body(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI ``openapi_extra`` for a route that parses ``model`` itself (documents the real schema)."""
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}}}


router = APIRouter(dependencies=[Depends(authenticate)])


@router.get("/v1/models")
async def list_models(request: Request) -> dict[str, Any]:
    state = ready_state(request)
    assert state.registry is not None
    return {"object": "list", "data": [model_card(m.id, m.created, m.max_model_len) for m in state.registry.list()]}


@router.get("/v1/models/{model_id:path}")
async def retrieve_model(request: Request, model_id: str) -> dict[str, Any]:
    state = ready_state(request)
    assert state.registry is not None
    served = state.registry.resolve(model_id)
    return model_card(served.id, served.created, served.max_model_len)


@router.post("/v1/chat/completions", openapi_extra=_request_body(ChatCompletionRequest))
async def chat_completions(request: Request) -> Response:
    state = ready_state(request)
    body, served = await parse_body(request, ChatCompletionRequest, state)
    tool_choice = body.effective_tool_choice
    tools = body.tools if tool_choice != "none" else None
    prompt_ids = _chat_ids(state, body.messages, tools)
    if tools is not None and (grammar := tool_grammar(tools, tool_choice, body.parallel_tool_calls is not False)):
        grammar = await _compile(state, grammar, "tools")
    else:
        grammar = await _compile(state, _response_grammar(body), "response_format")
    params = build_sampling_params(body, len(prompt_ids), served.max_model_len, "messages", grammar,
                                   logprobs=body.num_logprobs)
    fmt = ChatFormat(request.state.request_id, body.model, _token_texts(state), bool(body.logprobs), tools,
                     tool_choice)
    return await _generate(request, state, body, served, [prompt_ids], [params], fmt, "messages")


@router.post("/v1/completions", openapi_extra=_request_body(CompletionRequest))
async def completions(request: Request) -> Response:
    state = ready_state(request)
    body, served = await parse_body(request, CompletionRequest, state)
    prompts = [_tokenizer(state).encode(p) if isinstance(p, str) else list(p) for p in body.prompts]
    echo = bool(body.echo)
    prompt_logprobs = body.num_logprobs if echo else None
    params = [build_sampling_params(body, len(p), served.max_model_len, "prompt", logprobs=body.num_logprobs,
                                    prompt_logprobs=prompt_logprobs) for p in prompts]
    texts = _token_texts(state)
    echoed = None  # the prompts' texts, only needed to echo them
    if echo:
        prompt_texts = [p if isinstance(p, str) else "".join(texts.text(t) for t in p) for p in body.prompts]
        echoed = [t for t in prompt_texts for _ in range(body.num_choices)]
    fmt = CompletionFormat(request.state.request_id, body.model, texts, body.num_logprobs, echo, echoed)
    return await _generate(request, state, body, served, prompts, params, fmt, "prompt")


@router.post("/tokenize", openapi_extra=_request_body(TokenizeRequest))
async def tokenize(request: Request) -> dict[str, Any]:
    """vLLM's tokenizer endpoint: the ids a prompt or a chat becomes (the chat as /v1/chat/completions builds it)."""
    state = ready_state(request)
    body, served = await parse_body(request, TokenizeRequest, state)
    if body.messages is not None:
        ids = _chat_ids(state, body.messages, None, add_generation_prompt=body.add_generation_prompt is not False)
    else:
        ids = _tokenizer(state).encode(body.prompt)
    return {"count": len(ids), "max_model_len": served.max_model_len, "tokens": ids}


@router.post("/detokenize", openapi_extra=_request_body(DetokenizeRequest))
async def detokenize(request: Request) -> dict[str, Any]:
    state = ready_state(request)
    body, _ = await parse_body(request, DetokenizeRequest, state)
    vocab = state.loaded.engine.config.vocab_size  # type: ignore[union-attr]
    bad = [t for t in body.tokens if not 0 <= t < vocab]
    if bad:
        raise ApiError(400, f"Token id {bad[0]} is outside the vocabulary [0, {vocab}).", param="tokens",
                       code="invalid_value")
    return {"prompt": _tokenizer(state).decode(body.tokens)}


def build_openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema of the routes, plus the request models the handlers validate bodies with."""
    schema = get_openapi(title="m1-ascend OpenAI-compatible API", version="1", routes=app.routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in (ChatCompletionRequest, CompletionRequest, TokenizeRequest, DetokenizeRequest):
        model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}", by_alias=True)
        components.update(model_schema.pop("$defs", {}))
        components[model.__name__] = model_schema
    return schema


def create_app(settings: ServerSettings, loader: Loader = load_model) -> FastAPI:
    """The app for ``settings``; ``loader`` builds the engine (tests may pass their own)."""
    state = ServerState(settings, loader)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loading = asyncio.create_task(state.load())
        watchdog = asyncio.create_task(systemd_watchdog(lambda: state.health()[1]["status"]))
        try:
            yield
        finally:
            loading.cancel()
            watchdog.cancel()
            await state.close()

    app = FastAPI(title="m1-ascend", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.server = state
    install_error_handlers(app)
    app.include_router(router)
    openapi_schema = build_openapi(app)

    @app.get("/openapi.json", dependencies=[Depends(authenticate)], include_in_schema=False)
    async def openapi() -> dict[str, Any]:
        return openapi_schema

    @app.get("/health")
    async def health() -> JSONResponse:
        status, body = state.health()
        return JSONResponse(body, status_code=status)

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(RequestLifecycleMiddleware, metrics=state.metrics, audit=state.audit)
    return app
