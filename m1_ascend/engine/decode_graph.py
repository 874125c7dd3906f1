"""Decode steps run as graphs: persistent inputs per batch bucket, one compiled or captured step per bucket.

A pure decode step (every sequence adds one token) is the serving hot path, and at small batch sizes
its cost is host overhead: about thirty torch calls per layer, each launched from Python. So the
runner keeps every input of a decode step in persistent tensors sized for the largest bucket
(``DecodeInputs``) and runs the step as one graph per bucket size (1, 2, 4, then steps of 8):

- on the CPU, ``torch.compile(fullgraph=True, dynamic=False)``: the model is compiled around the
  paged attention, which runs as one opaque operator (its cost depends on lengths known only at run
  time; ``kernels/reference/attention.py``);
- on an NPU, an ACL graph captured with ``torch_npu.npu.graph(..., auto_dispatch_capture=True)``:
  replay re-runs the captured kernels on the buffers' current contents, and the only host values
  that change between steps, FIA's per-request KV lengths, are refreshed through ``update`` (one
  dict per attention op: global layers get the context lengths, sliding-window layers the lengths
  from their window's first block, whose table rows the host writes trimmed to the window).

Per step the host writes only what changed: each row's token, position and slots, a table column
when a sequence gains a block, a trimmed sliding row when the window passes a block boundary, and
a whole row only when a row changes hands. Rows past the batch are inert: their slots are -1 (no
K/V written), their conv state is a scratch slot, their snapshot a scratch row, their table block 0
read with one key. Steps with prefill tokens, LoRA adapters or more sequences than the largest
bucket run eagerly.
"""

from __future__ import annotations

import bisect
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..kernels import HostLengths, PagedAttentionMetadata
from .memory_plan import window_blocks
from .sequence import Sequence

if TYPE_CHECKING:
    from .model_runner import ModelRunner

logger = logging.getLogger(__name__)

# Inductor's per-call shape/stride asserts on every input (each layer's caches) cost ~2 ms a step at 40 layers;
# the inputs are the runner's persistent tensors, whose shapes never change.
COMPILE_OPTIONS = {"size_asserts": False}


def bucket_sizes(max_batch: int) -> list[int]:
    """1, 2, 4, then steps of 8 up to ``max_batch`` (what MindIE and vLLM capture): under 8 padded rows."""
    sizes = {size for size in (1, 2, 4) if size <= max_batch} | set(range(8, max_batch + 1, 8)) | {max_batch}
    return sorted(sizes)


def capture_blocker(runner: ModelRunner) -> str | None:
    """Why this runner's decode step cannot run as a graph on its backend, or None.

    The CPU reference always can (``torch.compile`` around its opaque attention op); an NPU backend
    is asked per layer geometry (``NpuBackend.capture_blocker``).
    """
    check = getattr(runner.backend, "capture_blocker", None)
    if check is None:
        return None
    config = runner.model.config
    for layer in range(config.num_hidden_layers):
        window = config.sliding_window if config.is_sliding(layer) else None
        reason = check(*config.layer_heads(layer), window, runner.dtype, runner.block_size)
        if reason:
            return f"layer {layer}: {reason}"
    return None


@dataclass
class _Row:
    """Which sequence a buffer row holds, and how much of its tables is already written."""

    seq: Sequence | None = None
    global_blocks: int = 0
    sliding_first: int = -1


@dataclass
class DecodeInputs:
    """The persistent tensors a decode step reads, for up to ``max_batch`` rows, and their host mirrors.

    On an NPU each buffer has a host mirror copied over once per step; on the CPU the mirror is the
    buffer. ``trim_window`` writes sliding-window tables from the window's first block (what the
    NPU kernels read); otherwise their columns are absolute block positions (what the reference reads).
    """

    max_batch: int
    global_cols: int
    sliding_cols: int
    block_size: int
    window: int
    scratch_slot: int
    scratch_snapshot: int
    trim_window: bool
    device: torch.device
    host: dict[str, np.ndarray] = field(init=False)
    device_buffers: dict[str, torch.Tensor] = field(init=False)
    rows: list[_Row] = field(init=False)
    epoch: torch.Tensor = field(init=False)  # host int64 scalar: the step's plans, for the reference op

    def __post_init__(self) -> None:
        shapes = {"input_ids": ((self.max_batch,), torch.int64), "positions": ((self.max_batch,), torch.int64),
                  "state_slots": ((self.max_batch,), torch.int64), "snapshot_blocks": ((self.max_batch,), torch.int64),
                  "global_slots": ((self.max_batch,), torch.int64), "sliding_slots": ((self.max_batch,), torch.int64),
                  "context_lens": ((self.max_batch,), torch.int32), "sliding_lens": ((self.max_batch,), torch.int32),
                  "global_tables": ((self.max_batch, self.global_cols), torch.int32),
                  "sliding_tables": ((self.max_batch, self.sliding_cols), torch.int32),
                  "cu_seqlens": ((self.max_batch + 1,), torch.int32)}
        on_cpu = self.device.type == "cpu"
        mirrors = {name: torch.zeros(shape, dtype=dtype) for name, (shape, dtype) in shapes.items()}
        self.host = {name: tensor.numpy() for name, tensor in mirrors.items()}
        self.device_buffers = mirrors if on_cpu else {name: t.to(self.device) for name, t in mirrors.items()}
        self._mirrors = mirrors
        self.host["cu_seqlens"][:] = np.arange(self.max_batch + 1)
        self.rows = [_Row() for _ in range(self.max_batch)]
        self.epoch = torch.zeros((), dtype=torch.int64)
        for row in range(self.max_batch):
            self._pad(row)
        self.sync()

    def _pad(self, row: int) -> None:
        host = self.host
        host["input_ids"][row] = host["positions"][row] = 0
        host["global_slots"][row] = host["sliding_slots"][row] = -1
        host["state_slots"][row] = self.scratch_slot
        host["snapshot_blocks"][row] = self.scratch_snapshot
        host["context_lens"][row] = host["sliding_lens"][row] = 1
        host["global_tables"][row] = host["sliding_tables"][row] = 0
        self.rows[row] = _Row()

    def fill(self, seqs: list[Sequence], bucket: int) -> tuple[HostLengths, HostLengths]:
        """Write this step's rows (pad rows up to ``bucket``); returns the host lengths of both pools."""
        host, bs = self.host, self.block_size
        for row, seq in enumerate(seqs):
            state = self.rows[row]
            if state.seq is not seq:
                state = self.rows[row] = _Row(seq)
                host["state_slots"][row] = seq.slot
            position = seq.num_computed_tokens
            host["input_ids"][row] = seq.token_ids[position]
            host["positions"][row] = position
            host["context_lens"][row] = position + 1
            block, offset = divmod(position, bs)
            host["global_slots"][row] = seq.global_blocks[block] * bs + offset
            host["snapshot_blocks"][row] = seq.global_blocks[block] if offset == bs - 1 else self.scratch_snapshot
            if len(seq.global_blocks) > state.global_blocks:
                new = seq.global_blocks[state.global_blocks:]
                host["global_tables"][row, state.global_blocks:len(seq.global_blocks)] = new
                if not self.trim_window:
                    host["sliding_tables"][row, state.global_blocks:len(seq.global_blocks)] = [
                        0 if b is None else b for b in seq.sliding_blocks[state.global_blocks:]]
                state.global_blocks = len(seq.global_blocks)
            sliding = seq.sliding_blocks[block]
            assert sliding is not None
            host["sliding_slots"][row] = sliding * bs + offset
            first = max(0, position - self.window + 1) // bs if self.trim_window else 0
            if self.trim_window and first != state.sliding_first:
                kept = seq.sliding_blocks[first:first + self.sliding_cols]
                host["sliding_tables"][row, :len(kept)] = [0 if b is None else b for b in kept]
                state.sliding_first = first
            if self.trim_window and host["sliding_tables"][row, block - first] != sliding:
                host["sliding_tables"][row, block - first] = sliding
            host["sliding_lens"][row] = position + 1 - first * bs
        for row in range(len(seqs), bucket):
            if self.rows[row].seq is not None or host["global_slots"][row] != -1:
                self._pad(row)
        self.epoch.fill_(int(self.epoch) + 1)
        self.sync()
        n = len(seqs)
        pad = [1] * (bucket - n)
        return (HostLengths([1] * bucket, [int(x) for x in host["context_lens"][:n]] + pad),
                HostLengths([1] * bucket, [int(x) for x in host["sliding_lens"][:n]] + pad))

    def sync(self) -> None:
        if self.device.type != "cpu":
            for name, buffer in self.device_buffers.items():
                buffer.copy_(self._mirrors[name])

    def view(self, name: str, rows: int) -> torch.Tensor:
        return self.device_buffers[name][:rows]


@dataclass
class _Bucket:
    """One bucket's static metadata and its step: a compiled function (CPU) or a captured graph (NPU)."""

    global_meta: PagedAttentionMetadata
    sliding_meta: PagedAttentionMetadata
    compiled: Callable[..., torch.Tensor] | None = None
    graph: Any = None
    output: torch.Tensor | None = None  # the captured graph's hidden states, rewritten by every replay


class DecodeGraphs:
    """Decode steps of ``runner`` as compiled (CPU) or captured (NPU) graphs, one per bucket size.

    Each bucket is its own compile region (``isolate_recompiles``: buckets sharing one would hit
    dynamo's limit of 8 entries per function), compiled once and never again (``fail_on_recompile``).
    ``skip_guards``: after warm-up dynamo's guards are not evaluated (about 2 ms a step at 40 layers):
    every call passes the same persistent tensors, so they cannot fail; tests run whole generations
    with the guards evaluated to hold that to account.
    """

    skip_guards = True

    def __init__(self, runner: ModelRunner, sizes: list[int], global_cols: int, window: int) -> None:
        """``sizes``: the batch buckets; ``global_cols``: table columns of the longest sequence (sliding rows
        hold only the window on an NPU)."""
        self.runner = runner
        self.npu = getattr(runner.backend, "graph_api", None)  # torch_npu.npu on the NPU backend
        sliding_cols = min(global_cols, window_blocks(window, runner.block_size)) if self.npu is not None else global_cols
        self.sizes = sorted(set(sizes))
        self.inputs = DecodeInputs(self.sizes[-1], global_cols, sliding_cols, runner.block_size, window,
                                   runner.scratch_slot, runner.scratch_snapshot, trim_window=self.npu is not None,
                                   device=runner.device)
        self.buckets: dict[int, _Bucket] = {}
        self.runs: Counter[int] = Counter()  # decode steps served per bucket
        self._sliding_layers = [runner.model.config.is_sliding(i) for i in range(runner.model.config.num_hidden_layers)]

    @property
    def max_batch(self) -> int:
        return self.sizes[-1]

    def _metadata(self, size: int, sliding: bool) -> PagedAttentionMetadata:
        inputs = self.inputs
        return PagedAttentionMetadata(
            cu_seqlens_q=inputs.view("cu_seqlens", size + 1),
            context_lens=inputs.view("sliding_lens" if sliding and inputs.trim_window else "context_lens", size),
            block_tables=inputs.view("sliding_tables" if sliding else "global_tables", size),
            slot_mapping=inputs.view("sliding_slots" if sliding else "global_slots", size),
            block_size=inputs.block_size, max_query_len=1, max_context_len=0, epoch_source=inputs.epoch,
            host_lengths=HostLengths([1] * size, [1] * size))

    def _forward(self, size: int, global_meta: PagedAttentionMetadata, sliding_meta: PagedAttentionMetadata) -> torch.Tensor:
        inputs, runner = self.inputs, self.runner
        snapshot = (torch.arange(size, device=runner.device), inputs.view("snapshot_blocks", size))
        ctx = runner.context(inputs.view("positions", size), inputs.view("cu_seqlens", size + 1),
                             inputs.view("state_slots", size), global_meta, sliding_meta, snapshot)
        return runner.model.model(inputs.view("input_ids", size), ctx)

    def warm_up(self, progress: Callable[[str], None] = logger.info) -> None:
        """Compile or capture every bucket, largest first (NPU graphs share one memory pool)."""
        pool = self.npu.graph_pool_handle() if self.npu is not None else None
        for index, size in enumerate(reversed(self.sizes), 1):
            progress(f"decode graphs: bucket {size} ({index}/{len(self.sizes)})")
            bucket = self.buckets[size] = _Bucket(self._metadata(size, False), self._metadata(size, True))
            self.inputs.fill([], size)  # inert rows: the step runs once now, on nothing
            with torch.inference_mode():
                if self.npu is None:
                    bucket.compiled = torch.compile(self._forward, fullgraph=True, dynamic=False,
                                                    options=COMPILE_OPTIONS, isolate_recompiles=True)
                    bucket.compiled(size, bucket.global_meta, bucket.sliding_meta)
                    continue
                bucket.graph = self.npu.NPUGraph()
                with self.npu.graph(bucket.graph, pool=pool, auto_dispatch_capture=True,
                                    capture_error_mode="thread_local"):
                    bucket.output = self._forward(size, bucket.global_meta, bucket.sliding_meta)
            records = len(bucket.graph.graph_dispatch_mode.graph_dispatch_records)
            if records != len(self._sliding_layers):
                raise RuntimeError(f"the decode graph of {size} rows recorded {records} attention ops, "
                                   f"expected one per layer ({len(self._sliding_layers)})")

    def fits(self, num_seqs: int) -> bool:
        return num_seqs <= self.max_batch

    def run(self, seqs: list[Sequence]) -> torch.Tensor:
        """Hidden states of this decode step, one row per sequence."""
        size = self.sizes[bisect.bisect_left(self.sizes, len(seqs))]
        bucket = self.buckets[size]
        lengths = self.inputs.fill(seqs, size)
        self.runs[size] += 1
        if bucket.compiled is not None:
            with torch.compiler.set_stance("fail_on_recompile", skip_guard_eval_unsafe=self.skip_guards):
                return bucket.compiled(size, bucket.global_meta, bucket.sliding_meta)[:len(seqs)]
        assert bucket.graph is not None and bucket.output is not None
        self._refresh(bucket, lengths)
        bucket.graph.replay()
        return bucket.output[:len(seqs)]

    def _refresh(self, bucket: _Bucket, lengths: tuple[HostLengths, HostLengths]) -> None:
        """This step's KV lengths to every captured attention op (one dict per op, in layer order)."""
        global_lengths, sliding_lengths = lengths
        bucket.graph.update(cpu_update_input=[
            {"actual_seq_lengths_kv": (sliding_lengths if sliding else global_lengths).kv_lens}
            for sliding in self._sliding_layers])
