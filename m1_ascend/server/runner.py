"""Run the app under uvicorn with TLS, logging and a graceful SIGTERM.

On SIGTERM/SIGINT uvicorn stops listening and waits for open responses; ``DrainingServer`` first
tells the engine to stop admitting and schedules the end of the grace period, after which the
remaining requests are aborted (streams get a final ``finish_reason: "abort"`` chunk and
``[DONE]``), so clients never see a connection cut mid-chunk.
"""

from __future__ import annotations

import logging
import socket

import uvicorn

from .app import ServerState, create_app
from .settings import ServerSettings

logger = logging.getLogger(__name__)

# uvicorn's own hard stop, after our abort at the end of the grace period has had time to flush.
HARD_STOP_MARGIN_SECONDS = 5.0
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class DrainingServer(uvicorn.Server):
    """A uvicorn server for our app that drains the engine when told to exit."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        app = create_app(settings)
        self.state: ServerState = app.state.server
        self.state.on_fatal = self._fatal
        self.fatal_error: str | None = None
        tls = {"ssl_certfile": str(settings.tls_cert), "ssl_keyfile": str(settings.tls_key)} if settings.tls_cert else {}
        config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level=settings.log_level,
                                timeout_graceful_shutdown=settings.shutdown_grace_seconds + HARD_STOP_MARGIN_SECONDS,
                                server_header=False, **tls)
        super().__init__(config)

    def _fatal(self, message: str) -> None:
        self.fatal_error = message
        self.should_exit = True

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.state.begin_shutdown()
        await super().shutdown(sockets)


def warn_about_exposure(settings: ServerSettings) -> None:
    if not settings.exposed:
        return
    if not settings.auth_enabled:
        logger.warning("listening on %s without API keys: anyone who can reach this port can use the model",
                       settings.host)
    if settings.tls_cert is None:
        logger.warning("listening on %s without TLS: requests (patient data) cross the network in clear text",
                       settings.host)


def serve(settings: ServerSettings) -> None:
    """Block until the server exits; raises if the model could not be loaded."""
    logging.basicConfig(level=settings.log_level.upper(), format=LOG_FORMAT)
    warn_about_exposure(settings)
    if settings.audit_log is None:
        logger.warning("no audit log configured (--audit-log); requests are not being recorded")
    elif settings.audit_log_text:
        logger.warning("audit_log_text is on: the audit log at %s stores prompt and completion text", settings.audit_log)
    server = DrainingServer(settings)
    server.run()
    if server.fatal_error is not None:
        raise RuntimeError(server.fatal_error)
