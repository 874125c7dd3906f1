#!/usr/bin/env python3
"""Send one fixed greedy prompt to the running service and compare the answer with a stored one.

Greedy decoding of fixed weights is deterministic on a given platform, so the same prompt must
give the same text after every install, upgrade or restart; a different text means different
weights, kernels or tokenizer. The expected answer is recorded once on the approved install
(``--record``) together with the digest of the weights' SHA256SUMS, and checked afterwards
(``--expected``). Standard library only: it runs with any Python 3 on the host.

Exit status: 0 match (or recorded), 1 different answer or different weights, 2 request failed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import ssl
import sys
import tempfile
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

DEFAULT_PROMPT = ("Question: What are the first-line drug treatments for essential hypertension in adults?\n"
                  "Answer:")
DEFAULT_MAX_TOKENS = 32


class ProbeError(Exception):
    """The service could not be asked (connection, TLS, HTTP error, unexpected reply)."""


def _context(args: argparse.Namespace) -> ssl.SSLContext | None:
    if not args.base_url.startswith("https"):
        return None
    context = ssl.create_default_context(cafile=args.cacert)
    if args.cert:
        context.load_cert_chain(args.cert, args.key)
    return context


def _call(args: argparse.Namespace, path: str, body: dict[str, Any] | None = None) -> Any:
    headers = {"Content-Type": "application/json"}
    key = os.environ.get("M1_ACCEPTANCE_API_KEY")
    if key:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(args.base_url.rstrip("/") + path, headers=headers, method="POST" if body else "GET",
                                     data=json.dumps(body).encode() if body else None)
    try:
        with urllib.request.urlopen(request, timeout=args.timeout, context=_context(args)) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise ProbeError(f"{path}: HTTP {exc.code}: {exc.read()[:300].decode(errors='replace')}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise ProbeError(f"{path}: {exc}") from None


def generate(args: argparse.Namespace, prompt: str, max_tokens: int) -> str:
    """Greedy text for ``prompt``: OpenAI completions (m1-ascend serve) or TGI /generate (MindIE)."""
    try:
        if args.api == "tgi":
            reply = _call(args, "/generate", {"inputs": prompt,
                                              "parameters": {"do_sample": False, "max_new_tokens": max_tokens}})
            return reply["generated_text"]
        model = _call(args, "/v1/models")["data"][0]["id"]
        reply = _call(args, "/v1/completions", {"model": model, "prompt": prompt, "max_tokens": max_tokens,
                                                "temperature": 0, "stream": False})
        return reply["choices"][0]["text"]
    except (KeyError, IndexError, TypeError) as exc:
        raise ProbeError(f"unexpected reply shape ({exc!r})") from None


def manifest_digest(path: Path | None) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path and path.is_file() else None


def record(args: argparse.Namespace) -> int:
    digest = manifest_digest(args.manifest)
    text = generate(args, args.prompt, args.max_tokens)
    entry = {"prompt": args.prompt, "max_tokens": args.max_tokens, "api": args.api, "text": text,
             "weights_manifest_sha256": digest, "recorded_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    fd, tmp = tempfile.mkstemp(dir=args.record.parent, prefix=f".{args.record.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(entry, f, ensure_ascii=False, indent=2)
        f.write("\n")
    os.replace(tmp, args.record)
    print(f"recorded the greedy answer to {args.record}: {text!r}")
    return 0


def compare(args: argparse.Namespace) -> int:
    expected = json.loads(args.expected.read_text(encoding="utf-8"))
    digest = manifest_digest(args.manifest)
    if expected.get("weights_manifest_sha256") and digest and digest != expected["weights_manifest_sha256"]:
        print(f"FAIL: {args.expected} was recorded for other weights (SHA256SUMS digest "
              f"{expected['weights_manifest_sha256'][:12]}…, these weights {digest[:12]}…)")
        return 1
    text = generate(args, expected["prompt"], expected["max_tokens"])
    if text == expected["text"]:
        print(f"PASS: greedy answer matches {args.expected}")
        return 0
    at = next((i for i, (a, b) in enumerate(zip(text, expected["text"], strict=False)) if a != b),
              min(len(text), len(expected["text"])))  # the first differing character, or where the shorter one ends
    print(f"FAIL: greedy answer differs from {args.expected} at character {at}\n"
          f"  expected: {expected['text']!r}\n  got:      {text!r}")
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="Exit status: 0 match (or recorded), 1 different answer, 2 request failed.")
    parser.add_argument("--base-url", required=True, help="business endpoint, e.g. https://127.0.0.1:1025")
    parser.add_argument("--api", choices=("openai", "tgi"), default="openai",
                        help="openai: /v1/completions with temperature 0; tgi: /generate with do_sample false")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--expected", type=Path, help="stored answer to compare with")
    mode.add_argument("--record", type=Path, help="record the answer to this file")
    parser.add_argument("--manifest", type=Path, help="the weights' SHA256SUMS (ties the record to the weights)")
    parser.add_argument("--prompt", default=DEFAULT_PROMPT, help="with --record: the prompt")
    parser.add_argument("--max-tokens", type=int, default=DEFAULT_MAX_TOKENS, help="with --record: tokens to generate")
    parser.add_argument("--cacert", help="CA to verify the server")
    parser.add_argument("--cert", help="client certificate (MindIE checks them)")
    parser.add_argument("--key", help="client key for --cert")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per request")
    args = parser.parse_args(argv)
    try:
        return record(args) if args.record else compare(args)
    except ProbeError as exc:
        print(f"greedy_probe: request failed: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
