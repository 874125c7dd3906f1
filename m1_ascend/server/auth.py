"""Bearer API keys: constant-time checks, and key ids so logs can say *who* without holding a secret.

Keys are compared as SHA-256 digests with ``hmac.compare_digest`` against every configured key
(no early exit), so neither a key's length nor which key matched leaks through timing. Only key
ids ever leave this module.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import stat
from pathlib import Path

from .errors import ApiError
from .settings import ServerSettings

logger = logging.getLogger(__name__)

KEY_ID_PATTERN = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
SINGLE_KEY_ID = "default"


class KeyFileError(ValueError):
    """The API keys file cannot be used; the message names the line, never the key."""


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


class ApiKeyStore:
    """Accepted keys by id; an empty store means authentication is off."""

    def __init__(self, keys: dict[str, str] | None = None) -> None:
        self._digests = [(key_id, _digest(key)) for key_id, key in (keys or {}).items()]

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    @classmethod
    def from_settings(cls, settings: ServerSettings) -> ApiKeyStore:
        if settings.api_keys_file is not None:
            return cls.from_file(settings.api_keys_file)
        if settings.api_key is not None:
            return cls({SINGLE_KEY_ID: settings.api_key.get_secret_value().strip()})
        return cls()

    @classmethod
    def from_file(cls, path: Path) -> ApiKeyStore:
        """Read ``<key-id> <key>`` lines (``#`` starts a comment)."""
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            logger.warning("API keys file %s is readable by other users; chmod 600 it", path)
        keys: dict[str, str] = {}
        for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.split()
            if len(parts) != 2:
                raise KeyFileError(f"{path} line {number}: expected '<key-id> <key>'")
            key_id, key = parts
            if not KEY_ID_PATTERN.fullmatch(key_id):
                raise KeyFileError(f"{path} line {number}: key id must be 1-64 of A-Z a-z 0-9 _ . @ -")
            if key_id in keys:
                raise KeyFileError(f"{path} line {number}: duplicate key id {key_id!r}")
            if key in keys.values():
                raise KeyFileError(f"{path} line {number}: this key is already listed under another id")
            keys[key_id] = key
        if not keys:
            raise KeyFileError(f"{path}: no keys (expected '<key-id> <key>' lines)")
        return cls(keys)

    def authenticate(self, authorization: str | None) -> str | None:
        """The key id of a valid ``Authorization: Bearer <key>`` header; raises 401 otherwise.

        Returns None when authentication is off.
        """
        if not self.enabled:
            return None
        challenge = {"WWW-Authenticate": "Bearer"}
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise ApiError(401, "Missing API key: send the header 'Authorization: Bearer <key>'.",
                           code="invalid_api_key", headers=challenge)
        presented = _digest(token)
        matched = None
        for key_id, digest in self._digests:
            if hmac.compare_digest(presented, digest):
                matched = key_id
        if matched is None:
            raise ApiError(401, "Incorrect API key provided.", code="invalid_api_key", headers=challenge)
        return matched
