"""The audit log: one JSON line per API request saying who asked, when, how much and how it ended.

Requests carry patient data, so the record has no field for prompt or completion text unless
the operator sets the explicit debug flag (``audit_log_text``); the writer, not the callers,
enforces that, so a handler cannot leak text by filling in the wrong field.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

TEXT_FIELDS = ("prompt_text", "completion_text")


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class AuditRecord:
    """Filled in while a request is served; written once when its response has ended."""

    request_id: str
    method: str
    path: str
    client: str | None
    received_at: float
    key_id: str | None = None
    model: str | None = None
    stream: bool | None = None
    status: int | None = None
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None
    first_token_at: float | None = None
    prompt_text: str | None = None
    completion_text: str | None = None

    def to_json(self, finished_at: float, include_text: bool) -> str:
        data: dict[str, Any] = asdict(self)
        for name in TEXT_FIELDS:
            if not include_text:
                del data[name]
        data["received_at"] = _iso(self.received_at)
        data["finished_at"] = _iso(finished_at)
        data["latency_s"] = round(finished_at - self.received_at, 4)
        data["ttft_s"] = round(self.first_token_at - self.received_at, 4) if self.first_token_at else None
        del data["first_token_at"]
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


class AuditLog:
    """Appends records to a file only its owner can read (mode 0600), one flushed line each."""

    def __init__(self, path: Path, include_text: bool = False) -> None:
        self.path = path
        self.include_text = include_text
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._file = os.fdopen(fd, "a", encoding="utf-8")
        self._lock = threading.Lock()

    def write(self, record: AuditRecord) -> None:
        line = record.to_json(time.time(), self.include_text)
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()
