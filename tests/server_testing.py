"""Shared pieces of the server tests: a real uvicorn server on a free loopback port, run in a thread."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
from prometheus_client.parser import text_string_to_metric_families

from m1_ascend.server import DrainingServer, ServerSettings
from m1_ascend.server.app import ServerState

STARTUP_TIMEOUT = 120.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@dataclass
class RunningServer:
    url: str
    server: DrainingServer
    settings: ServerSettings

    @property
    def state(self) -> ServerState:
        return self.server.state

    def client(self, api_key: str = "unused", **kwargs: Any) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=api_key, max_retries=0, timeout=60, **kwargs)

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every sample of GET /metrics, keyed by (name, sorted labels)."""
        text = httpx.get(f"{self.url}/metrics", verify=False).text
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(text) for s in family.samples}

    def metric(self, name: str, **labels: str) -> float:
        return self.metrics().get((name, tuple(sorted(labels.items()))), 0.0)

    def audit_records(self) -> list[dict[str, Any]]:
        assert self.settings.audit_log is not None
        path = Path(self.settings.audit_log)
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []

    def audit_record(self, response_id: str) -> dict[str, Any]:
        """The audit line of a response id (``chatcmpl-<request id>``); written just after the last byte."""
        request_id = response_id.rsplit("-", 1)[-1]
        return wait_for(lambda: next((r for r in self.audit_records() if r["request_id"] == request_id), None), 5,
                        f"the audit record of {request_id}")


@contextmanager
def running_server(model_dir: Path, **overrides: Any) -> Iterator[RunningServer]:
    """Start ``m1-ascend serve``'s server in a thread; yields once ``/health`` says ready."""
    settings = ServerSettings(**{"model": str(model_dir), "host": "127.0.0.1", "port": free_port(), "device": "cpu",
                                 "shutdown_grace_seconds": 2.0, **overrides})
    server = DrainingServer(settings)
    thread = threading.Thread(target=server.run, name="test-uvicorn", daemon=True)
    thread.start()
    scheme = "https" if settings.tls_cert else "http"
    url = f"{scheme}://127.0.0.1:{settings.port}"

    def ready() -> bool:
        assert thread.is_alive() and server.fatal_error is None, f"server died: {server.fatal_error}"
        try:
            return httpx.get(f"{url}/health", verify=False, timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(ready, STARTUP_TIMEOUT, "the server to become ready", interval=0.1)
        yield RunningServer(url, server, settings)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
