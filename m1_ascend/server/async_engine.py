"""One background thread drives the (not thread-safe) ``LLMEngine``; asyncio handlers talk to it by messages.

Handlers never touch the engine: they post commands (add, abort, abort-all, stop) to a queue the
engine thread drains between steps, and the thread hands each request's outputs back to the
event loop through that request's asyncio queue. Every request ends with exactly one final
output (``finish_reason`` set) — from the engine, or made here with ``"abort"`` when a request is
aborted — so a handler waiting on a stream can never hang.

Admission is bounded: at most ``max_num_seqs + max_queue`` requests are in flight; more are
refused with ``QueueFull`` (the HTTP layer answers 429) instead of queueing without limit.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from ..engine.errors import StepFailed
from ..engine.outputs import RequestOutput
from ..engine.sampling_params import SamplingParams
from .metrics import ServerMetrics

logger = logging.getLogger(__name__)

IDLE_POLL_SECONDS = 0.5


class QueueFull(Exception):
    """Admission refused: the waiting queue is at its bound."""


class EngineUnavailable(Exception):
    """The engine is not taking requests (shutting down, or it failed)."""


class RequestStream:
    """The outputs of one request, as an async iterator; ends after the final output."""

    def __init__(self, request_id: str, owner: AsyncEngine) -> None:
        self.request_id = request_id
        self._owner = owner
        self._queue: asyncio.Queue[RequestOutput] = asyncio.Queue()
        self._accepted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.last: RequestOutput | None = None
        self.first_token_at: float | None = None  # wall-clock, set by the engine thread

    @property
    def finished(self) -> bool:
        return self.last is not None and self.last.finished

    def __aiter__(self) -> AsyncIterator[RequestOutput]:
        return self

    async def __anext__(self) -> RequestOutput:
        if self.finished:
            raise StopAsyncIteration
        self.last = await self._queue.get()
        return self.last

    def abort(self) -> None:
        """Stop generating (client gone); frees the request's KV blocks. No-op once finished."""
        if not self.finished:
            self._owner.post("abort", self.request_id)

    async def result(self) -> RequestOutput:
        """Wait for the final output."""
        async for _ in self:
            pass
        assert self.last is not None
        return self.last


@dataclass
class _Tracked:
    """Engine-thread bookkeeping for one admitted request."""

    stream: RequestStream
    submitted_at: float
    prompt_token_ids: list[int]
    last: RequestOutput | None = None
    last_token_at: float | None = None
    num_tokens: int = 0


class AsyncEngine:
    """Owns the engine thread; every public method is called from the event loop."""

    def __init__(self, engine: Any, metrics: ServerMetrics, max_num_seqs: int, max_queue: int) -> None:
        self.engine = engine
        self.metrics = metrics
        self.capacity = max_num_seqs + max_queue
        self._commands: queue.SimpleQueue[tuple[str, tuple]] = queue.SimpleQueue()
        # Held while checking ``failure`` and posting an add, and while the dying thread settles the
        # adds still queued, so no request can be posted after that and wait forever.
        self._admission = threading.Lock()
        self._streams: dict[str, RequestStream] = {}  # loop side: admitted, final output not yet delivered
        self._tracked: dict[str, _Tracked] = {}  # engine-thread side
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.draining = False
        self.failure: str | None = None
        # When the engine thread last finished a loop iteration (a step, or an idle wait of at most
        # IDLE_POLL_SECONDS); a step that never returns stops this clock (see ``stall_seconds``).
        self._progress_at = time.monotonic()
        self.last_stats: dict[str, int] = dict(engine.stats())
        metrics.observe_engine(self.last_stats)

    # ---- event-loop side -------------------------------------------------------------------
    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="m1-ascend-engine", daemon=True)
        self._thread.start()

    @property
    def accepting(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self.draining and self.failure is None

    @property
    def num_in_flight(self) -> int:
        return len(self._streams)

    def stall_seconds(self) -> float:
        """How long the engine thread has made no progress while requests are in flight (0 when idle)."""
        if not self._streams or self.failure is not None:
            return 0.0
        return max(0.0, time.monotonic() - self._progress_at)

    async def submit(self, request_id: str, prompt_token_ids: list[int], params: SamplingParams,
                     adapter: str | None = None, leader: str | None = None) -> RequestStream:
        """Admit a request; raises QueueFull, EngineUnavailable, or the engine's RequestRejected.

        ``leader``: an admitted request with the same prompt whose cached prompt this one starts from.
        """
        if not self.accepting:
            raise EngineUnavailable(self.failure or "the server is shutting down")
        if len(self._streams) >= self.capacity:
            raise QueueFull(f"{len(self._streams)} requests in flight (limit {self.capacity})")
        stream = RequestStream(request_id, self)
        with self._admission:
            if self.failure is not None:
                raise EngineUnavailable(self.failure)
            self._streams[request_id] = stream
            self.post("add", stream, list(prompt_token_ids), params, time.monotonic(), adapter, leader)
        try:
            await stream._accepted
        except BaseException:
            self._streams.pop(request_id, None)
            if not stream._accepted.done():  # cancelled while waiting: the thread may still add it
                stream.abort()
            raise
        return stream

    def post(self, kind: str, *args: Any) -> None:
        self._commands.put((kind, args))

    def abort_all(self) -> None:
        """End every in-flight request now with finish_reason 'abort' (end of the shutdown grace)."""
        self.post("abort_all")

    async def stop(self, timeout: float = 10.0) -> None:
        """Abort whatever is left and join the engine thread."""
        self.draining = True
        if self._thread is not None and self._thread.is_alive():
            self.post("stop")
            await asyncio.to_thread(self._thread.join, timeout)

    def _deliver(self, stream: RequestStream, output: RequestOutput) -> None:
        stream._queue.put_nowait(output)
        if output.finished:
            self._streams.pop(stream.request_id, None)

    @staticmethod
    def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
        if future.done():
            return
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)

    # ---- engine-thread side ----------------------------------------------------------------
    def _to_loop(self, callback: Any, *args: Any) -> None:
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the loop closed under us during interpreter shutdown
            pass

    def _run(self) -> None:
        try:
            while True:
                busy = self.engine.has_unfinished_requests()
                if not self._handle_commands(block=not busy):
                    return
                if self.engine.has_unfinished_requests():
                    self._step()
                self._progress_at = time.monotonic()
                self.last_stats = dict(self.engine.stats())
                self.metrics.observe_engine(self.last_stats)
        except Exception as exc:  # the engine is in an unknown state: stop serving, end every stream
            logger.error("engine thread stopped: %s", type(exc).__name__, exc_info=logger.isEnabledFor(logging.DEBUG))
            self._abort_tracked(call_engine=False)
            with self._admission:
                self.failure = f"engine failed ({type(exc).__name__}); restart the server"
                self._refuse_queued_adds()

    def _refuse_queued_adds(self) -> None:
        while True:
            try:
                kind, args = self._commands.get_nowait()
            except queue.Empty:
                return
            if kind == "add":
                self._to_loop(self._settle, args[0]._accepted, EngineUnavailable(self.failure))

    def _handle_commands(self, block: bool) -> bool:
        """Apply pending commands; False when told to stop."""
        try:
            command = self._commands.get(timeout=IDLE_POLL_SECONDS) if block else self._commands.get_nowait()
        except queue.Empty:
            return True
        while True:
            kind, args = command
            if kind == "add":
                self._add(*args)
            elif kind == "abort":
                self._abort(*args, call_engine=True)
            elif kind == "abort_all":
                self._abort_tracked(call_engine=True)
            elif kind == "stop":
                self._abort_tracked(call_engine=True)
                return False
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                return True

    def _add(self, stream: RequestStream, prompt_token_ids: list[int], params: SamplingParams,
             submitted_at: float, adapter: str | None, leader: str | None) -> None:
        try:
            self.engine.add_request(stream.request_id, prompt_token_ids, params, adapter=adapter, leader=leader)
        except Exception as exc:  # RequestRejected and friends go back to the handler
            self._to_loop(self._settle, stream._accepted, exc)
            return
        self._tracked[stream.request_id] = _Tracked(stream, submitted_at, prompt_token_ids)
        self.metrics.prompt_tokens.inc(len(prompt_token_ids))
        self._to_loop(self._settle, stream._accepted, None)

    def _step(self) -> None:
        try:
            outputs = self.engine.step()
        except StepFailed as exc:  # that batch was aborted and freed by the engine; the rest carries on
            logger.error("engine step failed (%s); %d request(s) aborted",
                         type(exc.__cause__).__name__, len(exc.outputs))
            outputs = exc.outputs
        now = time.monotonic()
        for output in outputs:
            tracked = self._tracked.get(output.request_id)
            if tracked is not None:
                self._record_tokens(tracked, output, now)
                self._finish_or_forward(tracked, output)

    def _record_tokens(self, tracked: _Tracked, output: RequestOutput, now: float) -> None:
        new = len(output.token_ids) - tracked.num_tokens
        if new <= 0:
            return
        if tracked.num_tokens == 0:
            self.metrics.ttft.observe(now - tracked.submitted_at)
            tracked.stream.first_token_at = time.time()
        else:
            gap = (now - tracked.last_token_at) / new
            for _ in range(new):
                self.metrics.token_latency.observe(gap)
        self.metrics.generation_tokens.inc(new)
        tracked.num_tokens += new
        tracked.last_token_at = now

    def _finish_or_forward(self, tracked: _Tracked, output: RequestOutput) -> None:
        tracked.last = output
        if output.finished:
            del self._tracked[output.request_id]
            self.metrics.finished.labels(output.finish_reason).inc()
        self._to_loop(self._deliver, tracked.stream, output)

    def _abort(self, request_id: str, call_engine: bool) -> None:
        tracked = self._tracked.get(request_id)
        if tracked is None:  # already finished
            return
        if call_engine:
            self.engine.abort_request(request_id)
        last = tracked.last
        final = RequestOutput(request_id=request_id, prompt_token_ids=tracked.prompt_token_ids,
                              token_ids=list(last.token_ids) if last else [], text=last.text if last else "",
                              finish_reason="abort")
        self._finish_or_forward(tracked, final)

    def _abort_tracked(self, call_engine: bool) -> None:
        for request_id in list(self._tracked):
            self._abort(request_id, call_engine)
