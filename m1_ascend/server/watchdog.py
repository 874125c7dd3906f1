"""systemd's watchdog: while the server is not stalled, tell systemd so; when it stalls, stop, and systemd restarts it.

Under a unit with ``WatchdogSec=`` systemd sets ``NOTIFY_SOCKET`` and ``WATCHDOG_USEC``; a service
that sends no ``WATCHDOG=1`` within that time is killed and, with ``Restart=on-failure``, started
again. The pings come from the event loop and stop while ``/health`` says ``stalled`` or ``error``
(a hung engine step, a failed engine thread), so a hang the process cannot recover from ends in a
restart instead of a server that answers 200 forever. Without systemd this does nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable

logger = logging.getLogger(__name__)

UNHEALTHY = frozenset({"stalled", "error"})


def notify(message: bytes, address: str) -> None:
    """One datagram to systemd's notify socket (``@`` is the abstract namespace)."""
    target = "\0" + address[1:] if address.startswith("@") else address
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(message, target)


async def systemd_watchdog(status: Callable[[], str], environ: dict[str, str] | None = None) -> None:
    """Ping every half watchdog period while ``status()`` is healthy; return at once without systemd."""
    env = os.environ if environ is None else environ
    address, usec = env.get("NOTIFY_SOCKET"), env.get("WATCHDOG_USEC")
    if not address or not usec:
        return
    period = int(usec) / 1e6 / 2
    logger.info("systemd watchdog: pinging every %.1f s while healthy", period)
    while True:
        current = status()
        if current in UNHEALTHY:
            logger.error("systemd watchdog: not pinging, the server is %s", current)
        else:
            notify(b"WATCHDOG=1", address)
        await asyncio.sleep(period)
