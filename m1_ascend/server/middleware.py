"""Per-request bookkeeping around the whole app: request id, status, metrics and the audit line.

A plain ASGI middleware (not Starlette's ``BaseHTTPMiddleware``) because it must see the end of
streamed responses: the wrapped app returns only after the last SSE byte, or after the client
went away, and that is when the audit record is complete.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .audit import AuditLog, AuditRecord
from .errors import error_response
from .metrics import ServerMetrics

logger = logging.getLogger(__name__)

ROUTED_PATHS = frozenset({"/v1/chat/completions", "/v1/completions", "/v1/models", "/health", "/metrics",
                          "/tokenize", "/detokenize", "/openapi.json"})
GENERATION_PATHS = frozenset({"/v1/chat/completions", "/v1/completions"})
# API requests (they may carry patient text) are audited; probes and the schema are not.
AUDITED_PATHS = frozenset({"/tokenize", "/detokenize"})
MODEL_PATH_PREFIX = "/v1/models/"


def endpoint_label(path: str) -> str:
    """A bounded metrics label: the route, never the free part of a path."""
    if path.startswith(MODEL_PATH_PREFIX):
        return MODEL_PATH_PREFIX + "{id}"
    return path if path in ROUTED_PATHS else "other"
# nginx's code for "client closed the connection before the response started".
CLIENT_CLOSED = 499


class RequestLifecycleMiddleware:
    def __init__(self, app: ASGIApp, metrics: ServerMetrics, audit: AuditLog | None) -> None:
        self.app = app
        self.metrics = metrics
        self.audit = audit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex
        path = scope["path"]
        client = scope.get("client")
        record = AuditRecord(request_id=request_id, method=scope["method"], path=path,
                             client=client[0] if client else None, received_at=time.time())
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id
        state["audit"] = record
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                record.status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            # The exception text may quote request content: only its type is logged, the
            # traceback only when the operator asked for debug logging.
            logger.error("request %s: unhandled %s on %s %s", request_id, type(exc).__name__, scope["method"], path,
                         exc_info=logger.isEnabledFor(logging.DEBUG))
            if record.status is None:  # otherwise the response is under way and can only be cut short
                response = error_response(500, f"Internal server error (request id {request_id}).")
                await response(scope, receive, send_with_id)
        finally:
            status = record.status if record.status is not None else CLIENT_CLOSED
            record.status = status
            self.metrics.requests.labels(endpoint=endpoint_label(path), status=str(status)).inc()
            if path in GENERATION_PATHS:
                self.metrics.request_latency.observe(time.perf_counter() - started)
            if self.audit is not None and (path.startswith("/v1/") or path in AUDITED_PATHS):
                self.audit.write(record)
