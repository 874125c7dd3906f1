"""Prometheus metrics of one server, in a registry of its own (tests run several servers per process).

Label values are bounded sets (endpoint paths we route, status codes, finish reasons): never
request content, key material or request ids.
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

PREFIX = "m1_ascend"
# Seconds; covers a demo model on a busy CPU (ms) up to a long 14B prefill (tens of s).
TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
TOKEN_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class ServerMetrics:
    """The instruments; updated from the HTTP side and from the engine thread (they are thread-safe)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(f"{PREFIX}_http_requests", "HTTP requests answered, by endpoint and status code",
                                ["endpoint", "status"], registry=r)
        self.finished = Counter(f"{PREFIX}_request_finish", "generation requests ended, by finish reason",
                                ["reason"], registry=r)
        self.rejected = Counter(f"{PREFIX}_requests_rejected_queue_full",
                                "requests answered 429 because the waiting queue was full", registry=r)
        self.prompt_tokens = Counter(f"{PREFIX}_prompt_tokens", "prompt tokens of admitted requests", registry=r)
        self.generation_tokens = Counter(f"{PREFIX}_generation_tokens", "tokens generated", registry=r)
        self.queue_depth = Gauge(f"{PREFIX}_queue_depth", "requests waiting to be scheduled", registry=r)
        self.running = Gauge(f"{PREFIX}_running_sequences", "sequences being prefilled or decoded", registry=r)
        self.kv_blocks_used = Gauge(f"{PREFIX}_kv_blocks_used", "KV-cache blocks in use", registry=r)
        self.kv_blocks_free = Gauge(f"{PREFIX}_kv_blocks_free", "KV-cache blocks free", registry=r)
        self.kv_blocks_total = Gauge(f"{PREFIX}_kv_blocks_total", "KV-cache blocks in the pool", registry=r)
        self.engine_stall = Gauge(f"{PREFIX}_engine_stall_seconds", "time the engine has made no progress while "
                                  "requests are in flight (0 when idle or progressing)", registry=r)
        self.ttft = Histogram(f"{PREFIX}_time_to_first_token_seconds", "from admission to the first generated token",
                              buckets=TTFT_BUCKETS, registry=r)
        self.token_latency = Histogram(f"{PREFIX}_time_per_output_token_seconds",
                                       "gap between consecutive generated tokens of a request",
                                       buckets=TOKEN_BUCKETS, registry=r)
        self.request_latency = Histogram(f"{PREFIX}_request_latency_seconds",
                                         "from receiving a generation request to its last byte",
                                         buckets=LATENCY_BUCKETS, registry=r)

    def observe_engine(self, stats: Mapping[str, int]) -> None:
        """Copy the engine's ``stats()`` snapshot into the gauges."""
        self.queue_depth.set(stats["num_waiting"])
        self.running.set(stats["num_running"])
        self.kv_blocks_used.set(stats["kv_blocks_used"])
        self.kv_blocks_free.set(stats["kv_blocks_free"])
        self.kv_blocks_total.set(stats["kv_blocks_total"])

    def render(self) -> bytes:
        return generate_latest(self.registry)
