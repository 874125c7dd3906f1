"""OpenAI-compatible HTTP server over the engine (``m1-ascend serve``); see docs/server.md."""

from .app import create_app
from .runner import DrainingServer, serve
from .settings import ServerSettings, SettingsError, load_settings

__all__ = ["DrainingServer", "ServerSettings", "SettingsError", "create_app", "load_settings", "serve"]
