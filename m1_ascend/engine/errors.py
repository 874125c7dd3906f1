"""Errors the engine raises to its callers (the LLM API, the CLI and the HTTP server)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .outputs import RequestOutput


class RequestRejected(ValueError):
    """A request that can never run (too long, empty, bad ids); raised at submission, nothing is queued."""


class StepFailed(RuntimeError):
    """The model forward of one step raised.

    The requests of that batch were aborted and their blocks and slots returned to the pools
    before this is raised; ``outputs`` holds their final outputs (``finish_reason == "abort"``) so
    a server can answer them. The original exception is the ``__cause__``.
    """

    def __init__(self, message: str, outputs: list[RequestOutput]) -> None:
        super().__init__(message)
        self.outputs = outputs
