"""What this host offers a MindIE service: which logical NPU ids exist, and whether a port is free.

MindIE addresses NPUs by logical id: with ``ASCEND_RT_VISIBLE_DEVICES`` set, the listed cards
are renumbered 0..n-1; without it, every ``/dev/davinci<N>`` node is one card. When neither is
there (a CPU-only machine preparing a config) the listing is unknown and ids are not checked.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class NpuListing:
    ids: list[int]
    source: str

    def describe(self) -> str:
        return f"logical ids {','.join(map(str, self.ids)) or 'none'} from {self.source}"


def visible_npus(environ: Mapping[str, str] = os.environ, dev_dir: Path = Path("/dev")) -> NpuListing | None:
    """The logical NPU ids a process started here would see, or None when the host cannot tell."""
    visible = environ.get("ASCEND_RT_VISIBLE_DEVICES")
    if visible is not None and visible.strip():
        cards = [card for card in visible.split(",") if card.strip()]
        return NpuListing(list(range(len(cards))), f"ASCEND_RT_VISIBLE_DEVICES={visible}")
    nodes = [p for p in dev_dir.glob("davinci*") if p.name.removeprefix("davinci").isdigit()]
    if nodes:
        return NpuListing(list(range(len(nodes))), f"{len(nodes)} {dev_dir}/davinci* device nodes")
    return None


def parse_npu_ids(text: str) -> list[int]:
    """``"0,1,2"`` -> [0, 1, 2]; rejects empty items, negatives and duplicates with one line."""
    ids: list[int] = []
    for item in text.split(","):
        item = item.strip()
        if not item.isdigit():
            raise ValueError(f"NPU ids must be non-negative integers separated by commas, got {text!r}")
        if int(item) in ids:
            raise ValueError(f"NPU id {int(item)} is listed twice in {text!r}")
        ids.append(int(item))
    return ids


def missing_npus(ids: list[int], listing: NpuListing | None) -> list[int]:
    return [] if listing is None else [i for i in ids if i not in listing.ids]


def bind_problem(host: str, port: int) -> str | None:
    """Why a server could not listen on ``host:port`` right now, or None when it could."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # servers set it too: TIME_WAIT is no conflict
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return f"port {port} on {host} is already in use (is a service running? stop it or pick another port)"
            if exc.errno == errno.EADDRNOTAVAIL:
                return f"{host} is not an address of this host"
            return f"cannot listen on {host}:{port}: {exc.strerror}"
    return None
