"""Prove the weights on disk are the ones a hospital approved: a SHA-256 manifest of the directory.

The manifest is ``DIR/SHA256SUMS`` in exactly the format ``sha256sum`` writes (``<hex>  <path>``,
two spaces, paths relative to DIR), so it can be checked with ``cd DIR && sha256sum -c SHA256SUMS``
as well. Every file under DIR is listed except the manifest itself; a file that appears later is
reported as extra, because a dropped-in ``*.py`` or adapter changes what runs.

The servers call :func:`verify_or_refuse` at start-up: no manifest means a warning, a mismatch
means refusal unless the operator explicitly overrides it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from .atomic_write import write_text_atomic

MANIFEST = "SHA256SUMS"
CHUNK_BYTES = 8 * 1024 * 1024
logger = logging.getLogger(__name__)


class WeightIntegrityError(RuntimeError):
    """The weights differ from their manifest and no override was given."""


@dataclass
class VerifyResult:
    directory: Path
    manifest_found: bool
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    altered: list[str] = field(default_factory=list)
    files_checked: int = 0
    bytes_checked: int = 0

    @property
    def intact(self) -> bool:
        return self.manifest_found and not (self.missing or self.extra or self.altered)

    def problems(self) -> list[str]:
        return ([f"altered: {name}" for name in self.altered] + [f"missing: {name}" for name in self.missing]
                + [f"extra: {name}" for name in self.extra])

    def describe(self) -> str:
        if not self.manifest_found:
            return f"{self.directory}: no {MANIFEST}; weights not verified"
        if self.intact:
            return f"{self.directory}: {self.files_checked} files, {self.bytes_checked / 2**30:.2f} GiB match {MANIFEST}"
        counts = ", ".join(f"{len(names)} {kind}" for kind, names in
                           (("altered", self.altered), ("missing", self.missing), ("extra", self.extra)) if names)
        return f"{self.directory}: weights differ from {MANIFEST} ({counts}): " + "; ".join(self.problems())


# sha256sum marks a line whose name needs escaping with a leading backslash.
_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r"}


def _escape(name: str) -> tuple[str, str]:
    if not any(c in name for c in _ESCAPES):
        return "", name
    return "\\", "".join(_ESCAPES.get(c, c) for c in name)


def _unescape(name: str) -> str:
    out, chars = [], iter(name)
    for c in chars:
        if c == "\\":
            nxt = next(chars, "")
            out.append({"\\": "\\", "n": "\n", "r": "\r"}.get(nxt, "\\" + nxt))
        else:
            out.append(c)
    return "".join(out)


def format_manifest(digests: dict[str, str]) -> str:
    lines = []
    for name in sorted(digests):
        marker, escaped = _escape(name)
        lines.append(f"{marker}{digests[name]}  {escaped}\n")
    return "".join(lines)


def parse_manifest(text: str) -> dict[str, str]:
    """Read ``sha256sum`` output (text ``"  "`` or binary ``" *"`` mode); ValueError names a bad line."""
    digests: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        escaped = line.startswith("\\")
        body = line[1:] if escaped else line
        digest, sep, name = body[:64], body[64:66], body[66:]
        if len(digest) != 64 or any(c not in "0123456789abcdefABCDEF" for c in digest) or sep not in ("  ", " *") \
                or not name:
            raise ValueError(f"{MANIFEST} line {number} is not '<sha256>  <path>': {line[:80]!r}")
        digests[_unescape(name) if escaped else name] = digest.lower()
    return digests


def list_files(directory: Path) -> list[str]:
    """Every regular file under ``directory`` (symlinked files followed), as sorted relative POSIX paths."""
    names = []
    for root, _dirs, files in os.walk(directory):
        for file in files:
            path = Path(root, file)
            if path.is_file():
                names.append(path.relative_to(directory).as_posix())
    return sorted(name for name in names if name != MANIFEST)


def hash_files(directory: Path, names: list[str], progress: bool = True) -> dict[str, str]:
    """SHA-256 of each file, several files at once (hashlib releases the GIL), one progress bar in bytes."""
    total = sum((directory / name).stat().st_size for name in names)
    lock = threading.Lock()
    with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc="sha256", disable=not progress,
              leave=False) as bar:
        def digest(name: str) -> str:
            h = hashlib.sha256()
            with open(directory / name, "rb") as f:
                while chunk := f.read(CHUNK_BYTES):
                    h.update(chunk)
                    with lock:
                        bar.update(len(chunk))
            return h.hexdigest()

        with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
            return dict(zip(names, pool.map(digest, names), strict=True))


def write_manifest(directory: str | Path, force: bool = False, progress: bool = True) -> Path:
    """Record the current files; refuses to replace an existing manifest unless ``force``."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: no such directory")
    manifest = directory / MANIFEST
    if manifest.exists() and not force:
        raise FileExistsError(f"{manifest} exists; verify against it, or pass --force to record the current files")
    names = list_files(directory)
    if not names:
        raise FileNotFoundError(f"{directory}: no files to record")
    write_text_atomic(manifest, format_manifest(hash_files(directory, names, progress)), 0o644)
    return manifest


def verify_weights(directory: str | Path, progress: bool = True) -> VerifyResult:
    """Compare the directory with its manifest: files altered, missing, or not listed."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: no such directory")
    manifest = directory / MANIFEST
    if not manifest.is_file():
        return VerifyResult(directory, manifest_found=False)
    expected = parse_manifest(manifest.read_text(encoding="utf-8"))
    present = set(list_files(directory))
    result = VerifyResult(directory, manifest_found=True,
                          missing=sorted(set(expected) - present), extra=sorted(present - set(expected)))
    to_hash = sorted(set(expected) & present)
    actual = hash_files(directory, to_hash, progress)
    result.altered = [name for name in to_hash if actual[name] != expected[name]]
    result.files_checked = len(to_hash)
    result.bytes_checked = sum((directory / name).stat().st_size for name in to_hash)
    return result


def verify_or_refuse(directory: str | Path, allow_mismatch: bool, progress: bool = False) -> VerifyResult:
    """Start-up gate for the servers: warn without a manifest, refuse on a mismatch unless overridden."""
    result = verify_weights(directory, progress)
    if not result.manifest_found:
        logger.warning("%s (record one with `m1-ascend verify-weights %s --write`)", result.describe(), directory)
    elif not result.intact:
        if not allow_mismatch:
            raise WeightIntegrityError(result.describe() + " (refusing to start; override only after review)")
        logger.warning("%s; starting anyway because the check was overridden", result.describe())
    else:
        logger.info("%s", result.describe())
    return result
