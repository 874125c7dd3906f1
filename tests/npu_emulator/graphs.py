"""torch_npu's ACL-graph API on CPU: capture records a step, replay re-runs it, ``update`` refreshes FIA lengths.

Behaviour follows torch_npu 2.13.0 (``torch_npu/npu/graphs.py``, ``_npugraph_handlers/``; facts and
messages in ``torch_npu_facts.py``):

- Capture (``capture_begin``..``capture_end``, or ``with graph(...)``) runs every dispatched op
  eagerly, so the captured Python code proceeds, and records it: tensors by reference, host values
  (ints, lists, strings) as frozen copies, like the tiling baked into an ACL graph.
- What an ACL capture cannot contain raises ``RuntimeError`` here too: reading a tensor on the
  host (``.item()``, ``int()``/``bool()`` of a tensor, ``.tolist()``, ``.cpu()``, ``.numpy()``), ops
  whose output shape depends on data (``nonzero``, boolean indexing, ``masked_select``, ``unique``,
  ``repeat_interleave`` without ``output_size``) and ``torch.tensor(data)`` (a host-to-device copy).
- ``replay()`` re-executes the recorded ops on the *current contents* of the recorded tensors with
  the *recorded* host values; the captured Python code does not run again. A host value that
  changes between steps and is not refreshed stays stale, and gives wrong results, as on a device.
- With ``auto_dispatch_capture=True`` each FIA v1 call becomes a dispatch record: swapped to its
  ``.out`` form with a workspace and preallocated outputs (the caller gets those outputs).
  ``update(cpu_update_input)`` replaces, record by record, the keyword arguments present at capture
  (a one-dict list is applied to every record; absent keys are ignored) and re-runs the op's
  host-side tiling checks with them (``fia_tiling_checks``), as the device's re-launch does.
  On a device every recorded FIA waits for an event only ``update`` records (``graphs.py:466-469``
  captures ``ExternalEvent.wait``/``reset`` before the op; ``update_capture_record`` re-launches the
  op and records the event, ``graphs.py:585-587``), so a replay issued before its update (MindIE's
  order) still runs with the new lengths: here replay stops before the first record and ``update``
  resumes it. A replay with no update would hang a device; here the next replay raises instead.
- Refused during capture, as ACL capture refuses them: the host touching device data (torch_npu's
  ``assertNotCapturing`` / ``assertNotCapturingAclop`` checks in ``libtorch_npu.so``) and waiting on
  the device. Lifecycle messages are the C++ ``NPUGraph``'s strings from ``libtorch_npu.so``.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map

from .attention import fia_tiling_checks
from .torch_npu_facts import (
    CAPTURE_ERROR_MODES,
    CAPTURE_TWICE,
    FIA_V1_HANDLED_OPS,
    FIA_V1_OUT_KWARGS_KEYS,
    FIA_V1_UPDATE_SPECS,
    REPLAY_BEFORE_CAPTURE,
    UNKNOWN_CAPTURE_MODE,
    UPDATE_COUNT,
    UPDATE_NOT_AUTO,
)

PTA_PARAM_ERROR = "\n[ERROR] ERR00001 PTA invalid parameter"  # pta_error(ErrCode.PARAM)'s suffix, shortened
_CAPTURE_SUFFIX = " during NPU graph capture (emulated ACL capture: the host cannot read or write device data here)"

aten = torch.ops.aten
# Ops whose output size depends on tensor data, or that copy host data to the device.
_DATA_DEPENDENT = {aten._local_scalar_dense.default, aten.nonzero.default, aten.masked_select.default,
                   aten.lift_fresh.default, aten.unique_dim.default, aten._unique2.default, aten._unique.default,
                   aten.unique_consecutive.default}
_INDEXING = {aten.index.Tensor, aten.index_put.default, aten.index_put_.default, aten._index_put_impl_.default}
# Allocations: their memory is not a kernel's output, so replay must not overwrite it.
_ALLOCATIONS = {aten.empty.memory_format, aten.empty_strided.default, aten.new_empty.default,
                aten.new_empty_strided.default, aten.empty_like.default}

_local = threading.local()


def _capturing() -> NPUGraph | None:
    return getattr(_local, "graph", None)


def _in_kernel() -> bool:
    return getattr(_local, "in_kernel", False)


@contextmanager
def _kernel() -> Iterator[None]:
    """Host reads inside an operator's own implementation are the device's business, not the capture's."""
    before = _in_kernel()
    _local.in_kernel = True
    try:
        yield
    finally:
        _local.in_kernel = before


def _refuse(what: str) -> None:
    raise RuntimeError(f"{what}{_CAPTURE_SUFFIX}")


def _frozen(value: Any) -> Any:
    """Tensors by reference, host values copied: what a captured kernel launch keeps."""
    return tree_map(lambda x: x if isinstance(x, torch.Tensor) else copy.deepcopy(x), value)


def _tensors(value: Any) -> list[torch.Tensor]:
    return [x for x in tree_flatten(value)[0] if isinstance(x, torch.Tensor)]


@dataclass
class _Launch:
    """One recorded kernel: re-run on replay, its fresh results copied into the recorded outputs."""

    func: Any
    args: tuple
    kwargs: dict
    outputs: list[torch.Tensor | None]  # None: an alias of an input or an allocation, never rewritten

    def run(self) -> None:
        fresh = _tensors(self.func(*self.args, **self.kwargs))
        for stored, value in zip(self.outputs, fresh, strict=True):
            if stored is not None:
                stored.copy_(value)


@dataclass
class DispatchRecord:
    """A handled op under auto_dispatch_capture (torch_npu's ``_GraphDispatchRecord``)."""

    event: object
    handle: int
    kwargs: dict
    args: tuple
    op_cache_entry: Any

    def run(self) -> None:
        self.op_cache_entry(*self.args, **self.kwargs)


@dataclass
class GraphDispatchMode:
    """What ``NPUGraph.graph_dispatch_mode`` exposes: the records ``update`` walks."""

    graph_dispatch_records: list[DispatchRecord] = field(default_factory=list)

    def update_capture_record(self, cpu_update_input: Any) -> None:
        records = self.graph_dispatch_records
        if len(cpu_update_input) == 1:
            cpu_update_input = [cpu_update_input[0].copy() for _ in records]
        if len(cpu_update_input) != len(records):
            raise RuntimeError(UPDATE_COUNT.format(records=len(records), given=len(cpu_update_input)), PTA_PARAM_ERROR)
        for record, update_input in zip(records, cpu_update_input, strict=True):
            for key in update_input:
                if key in record.kwargs:
                    record.kwargs[key] = update_input[key]
            for location, index, key in FIA_V1_UPDATE_SPECS:  # declared positional slots (never present for FIA)
                if location == "arg" and key in update_input and len(record.args) > index:
                    record.args = (*record.args[:index], update_input[key], *record.args[index + 1:])
            fia_tiling_checks(*record.args, **record.kwargs)  # the re-launch: tiling sees the new host values now


class _CaptureMode(TorchDispatchMode):
    def __init__(self, graph: NPUGraph) -> None:
        super().__init__()
        self.graph = graph

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        self._check_capturable(func, args, kwargs)
        graph = self.graph
        if graph.auto_dispatch_capture and func.__name__ in FIA_V1_HANDLED_OPS:
            return graph._record_dispatch(func, args, kwargs)
        with _kernel():
            result = func(*args, **kwargs)
        inputs = {t.untyped_storage().data_ptr() for t in _tensors((args, kwargs))}
        outputs = [None if func in _ALLOCATIONS or t.untyped_storage().data_ptr() in inputs else t
                   for t in _tensors(result)]
        graph._tape.append(_Launch(func, _frozen(args), _frozen(kwargs), outputs))
        return result

    @staticmethod
    def _check_capturable(func: Any, args: tuple, kwargs: dict) -> None:
        if func in _DATA_DEPENDENT:
            _refuse(f"{func.__name__} (a host read, a data-dependent shape or a host-to-device copy)")
        if func in _INDEXING and any(t.dtype in (torch.bool, torch.uint8) for t in _tensors(args[1:2])):
            _refuse(f"{func.__name__} with a boolean index (a data-dependent shape)")
        if func is aten.repeat_interleave.Tensor and kwargs.get("output_size") is None:
            _refuse("repeat_interleave without output_size (a data-dependent shape)")


def _guarded(name: str, original: Any) -> Any:
    def guarded(self: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        if _capturing() is not None and not _in_kernel():
            _refuse(f"Tensor.{name}()")
        return original(self, *args, **kwargs)

    return guarded


@contextmanager
def _guard_host_reads() -> Iterator[None]:
    """``tolist``/``cpu``/``numpy`` of a CPU tensor dispatch nothing: guard them by hand during capture."""
    originals = {name: getattr(torch.Tensor, name) for name in ("tolist", "cpu", "numpy")}
    for name, original in originals.items():
        setattr(torch.Tensor, name, _guarded(name, original))
    try:
        yield
    finally:
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)


class NPUGraph:
    """``torch_npu.npu.NPUGraph`` emulated; see the module docstring for the semantics."""

    def __init__(self) -> None:
        self.graph_dispatch_mode = GraphDispatchMode()
        self.auto_dispatch_capture = False
        self._tape: list[_Launch | DispatchRecord] = []
        self._captured = False
        self._mode: _CaptureMode | None = None
        self._guard: Any = None
        self._waiting_at: int | None = None  # tape index a replay stopped at, waiting for update()
        self._updated = False  # an update() since the last replay

    def capture_begin(self, pool: Any = None, capture_error_mode: str = "global") -> None:
        if capture_error_mode not in CAPTURE_ERROR_MODES:
            raise RuntimeError(UNKNOWN_CAPTURE_MODE + capture_error_mode)
        if self._captured or self._mode is not None:
            raise RuntimeError(CAPTURE_TWICE)
        if _capturing() is not None:
            raise RuntimeError("another NPU graph capture is under way in this thread (emulator)")
        _local.graph = self
        self._guard = _guard_host_reads()
        self._guard.__enter__()
        self._mode = _CaptureMode(self)
        self._mode.__enter__()

    def capture_end(self) -> None:
        if self._mode is None:
            raise RuntimeError("capture_end() called before capture_begin().")
        mode, self._mode = self._mode, None
        mode.__exit__(None, None, None)
        self._guard.__exit__(None, None, None)
        _local.graph = None
        self._captured = True

    def _record_dispatch(self, func: Any, args: tuple, kwargs: dict) -> Any:
        """FIA v1 under auto_dispatch_capture: swap to ``.out`` with a workspace and preallocated outputs."""
        npu = torch.ops.npu
        out_op = npu.npu_fused_infer_attention_score.out
        if func is not out_op:
            workspace = npu._npu_fused_infer_attention_score_get_max_workspace(*args, **kwargs)
            out_kwargs = {key: kwargs[key] for key in FIA_V1_OUT_KWARGS_KEYS if key in kwargs}
            output, lse = npu._npu_fused_infer_attention_score_infer_output(args[0], args[2], **out_kwargs)
            kwargs = {**kwargs, "workspace": workspace, "out": [output, lse]}
            func = out_op
        with _kernel():
            func(*args, **kwargs)
        records = self.graph_dispatch_mode.graph_dispatch_records
        record = DispatchRecord(object(), len(records), _frozen(kwargs), tuple(args), func)
        records.append(record)
        self._tape.append(record)
        return tuple(kwargs["out"])

    def replay(self) -> None:
        if not self._captured:
            raise RuntimeError(REPLAY_BEFORE_CAPTURE)
        if self._waiting_at is not None:
            raise RuntimeError("replay() while the previous replay still waits for update(): on a device its first "
                               "recorded FIA waits for the event only update() records, so this would hang (emulator)")
        gated = self.auto_dispatch_capture and not self._updated
        self._updated = False
        self._run_from(0, stop_at_record=gated)

    def _run_from(self, start: int, stop_at_record: bool) -> None:
        with torch.inference_mode():
            for index in range(start, len(self._tape)):
                entry = self._tape[index]
                if stop_at_record and isinstance(entry, DispatchRecord):
                    self._waiting_at = index
                    return
                entry.run()
        self._waiting_at = None

    def update(self, cpu_update_input: Any) -> None:
        if not self.auto_dispatch_capture:
            raise RuntimeError(UPDATE_NOT_AUTO, PTA_PARAM_ERROR)
        self.graph_dispatch_mode.update_capture_record(cpu_update_input)
        if self._waiting_at is not None:
            self._run_from(self._waiting_at, stop_at_record=False)
        else:
            self._updated = True

    def reset(self) -> None:
        """Drop the captured graph; keep ``graph_dispatch_records`` (``graphs.py:642-645``: reset calls only
        the C++ reset, which does not touch the Python dispatch mode's records)."""
        self._tape = []
        self._captured = False
        self._waiting_at = None

    def pool(self) -> object:
        if not self._captured:
            raise RuntimeError("Called NPUGraph::pool() without a preceding successful capture.")
        return self


class graph:  # noqa: N801 (torch_npu's name)
    """``torch_npu.npu.graph``: capture the ``with`` block into ``npu_graph``."""

    def __init__(self, npu_graph: NPUGraph, pool: Any = None, stream: Any = None, auto_dispatch_capture: bool = False,
                 capture_error_mode: str = "global") -> None:
        self.pool = () if pool is None else (pool,)
        self.npu_graph = npu_graph
        self.capture_error_mode = capture_error_mode
        self.npu_graph.auto_dispatch_capture = auto_dispatch_capture

    def __enter__(self) -> None:
        self.npu_graph.capture_begin(*self.pool, capture_error_mode=self.capture_error_mode)

    def __exit__(self, *exc: object) -> None:
        self.npu_graph.capture_end()


def graph_pool_handle() -> object:
    return object()


def synchronize(device: Any = None) -> None:
    """Waiting for the device is one of the things a capture cannot contain."""
    if _capturing() is not None:
        _refuse("torch.npu.synchronize()")


def is_current_stream_capturing() -> bool:
    return _capturing() is not None


class Stream:
    """Streams are sequential on CPU; the methods graph code calls are there and do nothing."""

    def wait_stream(self, stream: Stream) -> None:
        pass

    def synchronize(self) -> None:
        pass


_DEFAULT_STREAM = Stream()


def current_stream(device: Any = None) -> Stream:
    return _DEFAULT_STREAM


@contextmanager
def stream(s: Stream | None) -> Iterator[None]:
    yield
