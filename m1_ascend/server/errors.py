"""Every failure a client can see, in OpenAI's error shape.

OpenAI client libraries parse ``{"error": {"message", "type", "param", "code"}}`` and raise typed
exceptions from the status code, so all our 4xx/5xx answers — including the ones Starlette makes
itself (unknown route, wrong method) — use this one shape.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

# OpenAI's ``type`` strings by status; clients branch on the status, people read the type.
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    503: "service_unavailable_error",
}


class ApiError(Exception):
    """A request we refuse, with the status, the message a developer acts on and the offending param."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers or {}


def error_body(status: int, message: str, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": _ERROR_TYPES.get(status, "server_error" if status >= 500
                                                                   else "invalid_request_error"),
                      "param": param, "code": code}}


def error_response(status: int, message: str, *, param: str | None = None, code: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message, param, code), status_code=status, headers=headers)


def from_validation_error(exc: ValidationError) -> ApiError:
    """The first problem pydantic found, as ``param`` (dotted path) plus a readable message.

    Only pydantic's message and the location are used, never the input value: the input may be
    patient text and the message is also what the server logs.
    """
    first = exc.errors(include_input=False, include_url=False)[0]
    param = ".".join(str(part) for part in first["loc"]) or None
    if first["type"] == "extra_forbidden":
        return ApiError(400, f"Unrecognized request argument supplied: {param}", param=param)
    if first["type"] == "missing":
        return ApiError(400, f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter")
    return ApiError(400, f"Invalid value for '{param}': {first['msg']}.", param=param, code="invalid_value")


def install_error_handlers(app: FastAPI) -> None:
    """Route ApiError and Starlette's own HTTP errors (404, 405) to the OpenAI shape.

    Unexpected exceptions are answered by ``RequestLifecycleMiddleware``, which can log them
    without their (possibly patient-text) message.
    """

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.message, param=exc.param, code=exc.code, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code == 404:
            message = f"Unknown path {request.url.path}; see GET /v1/models and the OpenAI API routes."
        return error_response(exc.status_code, message, headers=getattr(exc, "headers", None))
