"""Load test for ``m1-ascend serve``: N concurrent streaming chat clients over real HTTP.

Each client sends streaming ``/v1/chat/completions`` requests back to back until the total is
reached, and every request is classified:

- ``ok``: HTTP 200, a final chunk with a finish_reason, the usage chunk and ``data: [DONE]``;
- ``429``: a clean refusal (OpenAI error JSON with code ``queue_full`` and a ``Retry-After``);
- ``error``: anything else (other status, broken stream, transport error) — the run fails.

Reports throughput (requests/s, generated tokens/s), p50/p99 time to first token and end-to-end
latency, as seen by the clients. Without ``--url`` it starts a server itself (in this process, on
loopback) on the demo checkpoint or ``--model-dir``. ``--overheads`` runs the same load four times
against the same server, unconstrained, with a ``json_schema`` response format, with
``logprobs``/``top_logprobs=5``, and with ``n=2``, and prints each variant's tokens/s relative to
the unconstrained run.

    python benchmarks/load_server.py --concurrency 16 --requests 64 --max-tokens 32
    python benchmarks/load_server.py --overheads --rounds 3 --concurrency 16 --requests 32 --max-tokens 96 --ignore-eos
    python benchmarks/load_server.py --url http://10.0.0.5:8000 --api-key "$KEY" --model Baichuan-M1-14B-Instruct
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

# Request fields of each --overheads variant (on top of the plain streaming chat request).
TRIAGE_SCHEMA = {"type": "object", "additionalProperties": False, "required": ["summary", "urgency", "follow_up"],
                 "properties": {"summary": {"type": "string"}, "urgency": {"type": "integer"},
                                "follow_up": {"type": "boolean"}}}
VARIANTS: dict[str, dict] = {
    "free": {},
    "json_schema": {"response_format": {"type": "json_schema",
                                        "json_schema": {"name": "triage", "strict": True, "schema": TRIAGE_SCHEMA}}},
    "logprobs": {"logprobs": True, "top_logprobs": 5},
    "n2": {"n": 2},
}

# Synthetic, patient-free questions.
QUESTIONS = [
    "What are common causes of a persistent dry cough?",
    "How should a mild ankle sprain be treated at home?",
    "What does a high fasting blood glucose value suggest?",
    "When is a fever in an adult a reason to see a doctor?",
    "What are the warning signs of a stroke?",
    "How does hypertension damage the kidneys over time?",
    "What lifestyle changes help lower LDL cholesterol?",
    "Explain the difference between a virus and a bacterium.",
]


@dataclass
class Result:
    outcome: str  # "ok", "429" or "error"
    latency_s: float
    ttft_s: float | None = None
    completion_tokens: int = 0
    detail: str = ""


@dataclass
class Report:
    concurrency: int
    requests: int
    wall_s: float
    outcomes: dict[str, int] = field(default_factory=dict)
    requests_per_s: float = 0.0
    tokens_per_s: float = 0.0
    ttft_p50_s: float | None = None
    ttft_p99_s: float | None = None
    latency_p50_s: float | None = None
    latency_p99_s: float | None = None
    errors: list[str] = field(default_factory=list)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


async def one_request(client: httpx.AsyncClient, url: str, body: dict) -> Result:
    started = time.perf_counter()
    ttft = None
    try:
        async with client.stream("POST", url, json=body) as response:
            if response.status_code == 429:
                error = json.loads(await response.aread())["error"]
                clean = error.get("code") == "queue_full" and response.headers.get("retry-after", "").isdigit()
                return Result("429" if clean else "error", time.perf_counter() - started,
                              detail="" if clean else f"unclean 429: {error}")
            if response.status_code != 200:
                return Result("error", time.perf_counter() - started,
                              detail=f"HTTP {response.status_code}: {(await response.aread())[:200]!r}")
            finish, tokens, done = None, 0, False
            async for line in response.aiter_lines():
                if not line.startswith("data: "):
                    continue
                data = line.removeprefix("data: ")
                if data == "[DONE]":
                    done = True
                    break
                chunk = json.loads(data)
                if chunk.get("usage"):
                    tokens = chunk["usage"]["completion_tokens"]
                for choice in chunk["choices"]:
                    if ttft is None and (choice["delta"].get("content") or choice["delta"].get("tool_calls")):
                        ttft = time.perf_counter() - started
                    finish = choice["finish_reason"] or finish
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        return Result("error", time.perf_counter() - started, detail=f"{type(exc).__name__}: {exc}")
    latency = time.perf_counter() - started
    if not done or finish not in ("stop", "length"):
        return Result("error", latency, detail=f"stream ended without [DONE] or finish_reason (got {finish!r})")
    return Result("ok", latency, ttft if ttft is not None else latency, tokens)


async def run_load(base_url: str, api_key: str | None, model: str, concurrency: int, total: int,
                   max_tokens: int, temperature: float, verify: bool = True, ignore_eos: bool = False,
                   extra: dict | None = None) -> Report:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    url = f"{base_url}/v1/chat/completions"
    counter = iter(range(total))
    results: list[Result] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async with httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(600), limits=limits, verify=verify) as client:
        async def worker() -> None:
            for i in counter:
                body = {"model": model, "stream": True, "stream_options": {"include_usage": True},
                        "max_tokens": max_tokens, "temperature": temperature, "seed": i, "ignore_eos": ignore_eos,
                        "messages": [{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}], **(extra or {})}
                results.append(await one_request(client, url, body))

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started

    ok = [r for r in results if r.outcome == "ok"]
    report = Report(concurrency=concurrency, requests=total, wall_s=round(wall, 3))
    for r in results:
        report.outcomes[r.outcome] = report.outcomes.get(r.outcome, 0) + 1
    report.requests_per_s = round(len(ok) / wall, 3)
    report.tokens_per_s = round(sum(r.completion_tokens for r in ok) / wall, 2)
    ttfts = sorted(r.ttft_s for r in ok if r.ttft_s is not None)
    latencies = sorted(r.latency_s for r in ok)
    for name, values in (("ttft", ttfts), ("latency", latencies)):
        for q in (0.5, 0.99):
            value = percentile(values, q)
            setattr(report, f"{name}_p{round(q * 100)}_s", None if value is None else round(value, 4))
    report.errors = sorted({r.detail for r in results if r.outcome == "error"})[:10]
    return report


@contextmanager
def local_server(model_dir: str | None, max_num_seqs: int, max_queue: int) -> Iterator[tuple[str, str]]:
    """Start the server in this process (as ``m1-ascend serve`` would); yields (url, served model id)."""
    import socket

    from m1_ascend.server import DrainingServer, ServerSettings

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = ServerSettings(model=model_dir, port=port, device="cpu", max_num_seqs=max_num_seqs,
                              max_queue=max_queue, log_level="warning", shutdown_grace_seconds=1)
    server = DrainingServer(settings)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 900  # the demo checkpoint is built on first use
    while True:
        if server.fatal_error or not thread.is_alive():
            raise SystemExit(f"server failed to start: {server.fatal_error}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit("server did not become ready")
        time.sleep(0.2)
    try:
        yield url, server.state.loaded.served.id
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@contextmanager
def remote_server(url: str, api_key: str | None, verify: bool) -> Iterator[tuple[str, str]]:
    """An already running server; yields (url, the first served model id)."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    models = httpx.get(f"{url.rstrip('/')}/v1/models", headers=headers, verify=verify, timeout=30)
    models.raise_for_status()
    yield url.rstrip("/"), models.json()["data"][0]["id"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="server base URL (default: start one here on the demo checkpoint)")
    parser.add_argument("--api-key", help="Bearer key for --url")
    parser.add_argument("--insecure", action="store_true", help="do not verify the server's TLS certificate")
    parser.add_argument("--model", help="model id to request (default: the first of GET /v1/models)")
    parser.add_argument("--model-dir", help="checkpoint for the local server (default: the demo checkpoint)")
    parser.add_argument("--max-num-seqs", type=int, default=16, help="local server: sequences per step")
    parser.add_argument("--max-queue", type=int, default=256, help="local server: waiting-queue bound")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent streaming clients")
    parser.add_argument("--requests", type=int, default=64, help="total requests")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--ignore-eos", action="store_true", help="generate exactly --max-tokens (vLLM extension)")
    parser.add_argument("--overheads", action="store_true",
                        help="compare json_schema, logprobs and n=2 against unconstrained requests, same server")
    parser.add_argument("--rounds", type=int, default=1,
                        help="with --overheads: run the variants this many times, interleaved (machine drift "
                             "then hits every variant alike); tokens/s are totals over the rounds")
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args(argv)

    variants = VARIANTS if args.overheads else {"free": {}}
    rounds: dict[str, list[Report]] = {name: [] for name in variants}
    with (local_server(args.model_dir, args.max_num_seqs, args.max_queue) if args.url is None
          else remote_server(args.url, args.api_key, not args.insecure)) as (url, served):
        for _ in range(args.rounds if args.overheads else 1):
            for name, extra in variants.items():
                rounds[name].append(asyncio.run(run_load(
                    url, args.api_key, args.model or served, args.concurrency, args.requests, args.max_tokens,
                    args.temperature, verify=not args.insecure, ignore_eos=args.ignore_eos, extra=extra)))
    result = {name: [asdict(r) for r in reports] for name, reports in rounds.items()} if args.overheads \
        else asdict(rounds["free"][0])
    text = json.dumps(result, indent=2)
    print(text)
    if args.overheads:
        totals = {name: sum(r.tokens_per_s * r.wall_s for r in reports) / sum(r.wall_s for r in reports)
                  for name, reports in rounds.items()}
        for name, rate in totals.items():
            print(f"{name:12s} {rate:8.1f} tokens/s  {rate / totals['free']:.2f}x of free")
    if args.json:
        args.json.write_text(text + "\n")
    clean = all(r.outcomes.get("error", 0) == 0 for reports in rounds.values() for r in reports)
    print("every request completed or got a clean 429" if clean else "SOME REQUESTS FAILED", file=sys.stderr)
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
