"""Helpers for the deployment-kit tests: running the kit's scripts, a MindIE-ready checkpoint copy, an HTTP stand-in."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
M1_ASCEND = Path(sys.executable).with_name("m1-ascend")


def run_script(script: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 300,
               cwd: Path | None = None, inherit_env: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a kit script with this venv's m1-ascend and python first on PATH.

    ``env`` adds to this process's environment, or replaces it with ``inherit_env=False``.
    """
    base = os.environ if inherit_env else {}
    full_env = {**base, "PATH": f"{M1_ASCEND.parent}:{os.environ['PATH']}", **(env or {})}
    return subprocess.run([str(script), *args], capture_output=True, text=True, env=full_env, timeout=timeout, cwd=cwd)


def mindie_ready_copy(source: Path, destination: Path) -> Path:
    """A checkpoint copy whose config.json has torch_dtype (MindIE reads it; transformers 5 writes 'dtype')."""
    shutil.copytree(source, destination)
    config = json.loads((destination / "config.json").read_text())
    config["torch_dtype"] = "float32"
    (destination / "config.json").write_text(json.dumps(config))
    return destination


class Reply:
    def __init__(self, status: int, body: Any) -> None:
        self.status, self.body = status, body


@contextmanager
def http_service(routes: dict[tuple[str, str], Reply]) -> Iterator[tuple[str, list[tuple[str, str, Any]]]]:
    """A loopback HTTP server answering ``(method, path)`` with fixed replies; yields (base url, requests seen)."""
    seen: list[tuple[str, str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            seen.append((method, self.path, body))
            reply = routes.get((method, self.path), Reply(404, {"error": "no route"}))
            payload = json.dumps(reply.body).encode()
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            self._answer("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._answer("POST")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def sparse_checkpoint(directory: Path, config: Any, shards: int = 8) -> Path:
    """A full-size bf16 checkpoint of ``config`` whose tensor data are holes in sparse files.

    The headers, the index and the file sizes are exactly what the real weights have, so the
    loader's shape and size checks pass, while the disk holds a few kilobytes: the real 14B
    geometry can be planned and configured without 28 GB of weights.
    """
    from m1_ascend.checkpoint import expected_shapes

    directory.mkdir(parents=True)
    names = list(expected_shapes(config).items())
    weight_map: dict[str, str] = {}
    for index in range(shards):
        shard = f"model-{index + 1:05d}-of-{shards:05d}.safetensors"
        header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
        offset = 0
        for name, shape in names[index::shards]:
            size = 2 * int(np.prod(shape))
            header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + size]}
            weight_map[name] = shard
            offset += size
        raw = json.dumps(header).encode()
        raw += b" " * (-len(raw) % 8)
        with open(directory / shard, "wb") as f:
            f.write(len(raw).to_bytes(8, "little") + raw)
            f.truncate(8 + len(raw) + offset)
    (directory / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (directory / "config.json").write_text(json.dumps({**config.to_dict(), "torch_dtype": "bfloat16"}))
    return directory
