"""One MindIE process for tests: the text-generator (TG) side played here, the runtime by the stand-in.

``MindIEService(checkpoint, max_batch_size=...)`` does what MindIE's ``Generator`` does at start-up
(through the stand-in's own, reduced ``Generator``): build ``AclGraphModelWrapperExp`` -> ``ModelRunnerExp``
and load the weights, warm up on a one-block pool (eager with padding), allocate the real pool,
capture the decode graphs. ``run(requests)`` then schedules like the TG: newly arrived requests are
prefilled together, otherwise every running request decodes one token; each step's ``ModelInput`` is
built the way the TG builds it (``generator._compose_model_inputs``) and goes through
``GeneratorAclGraph.forward``; the next token is the argmax of the returned logits; finished
requests free their blocks, so batches grow and shrink between steps (3 pads to 4, 5 to 8, 9 to 16,
above the largest capture size the runner goes eager). Everything that arrived by a step is prefilled
together, and every running request decodes: like MindIE's ``check_batch_size_limit``, the harness
only warns when a batch exceeds ``max_batch_size`` -- which is how a test reaches the eager path.
``load_tokenizer`` defaults to True as in MindIE's wrapper (``AutoTokenizer`` on the checkpoint).

Block size is 128: ``fia_attention.py`` hard-codes 128 when it zeroes the unused block-table columns
(:93-97), so a smaller ``cacheBlockSize`` would wipe real block ids in padded decode -- MindIE's
torch backend does not work with it, and the harness refuses it.

Exposed for tests: what ``run`` returns per request (tokens and the logits rows they came from),
``steps`` (kind, the batch's context lengths, padded size, whether a graph replayed), ``warmup_steps``
(with their logits), ``captured_sizes``, ``replays`` and
``updates`` (each update's ``cpu_update_input``, per graph size), ``update_failures`` (what MindIE
logged and swallowed), and ``runner``/``generator``/``npu_cache`` for direct inspection. It needs the
emulated ``torch_npu`` in ``sys.modules`` and a MindIE tree on ``sys.path`` (``fixtures``).
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

BLOCK_SIZE = 128


@dataclass
class Request:
    prompt: list[int]
    max_new_tokens: int
    arrival: int = 0  # the step (forward pass) from which the TG admits it


@dataclass
class Generated:
    tokens: list[int] = field(default_factory=list)
    logits: list[torch.Tensor] = field(default_factory=list)  # the row each token was picked from


@dataclass
class Step:
    is_prefill: bool
    context_lengths: list[int]  # the TG's ``context_length``, one per sequence in the batch
    padded: int  # BatchDescriptor.num_tokens the runner chose
    graph: bool  # a captured graph replayed
    logits: torch.Tensor | None = None  # warm-up steps only

    @property
    def batch(self) -> int:
        return len(self.context_lengths)


class _LogRecords(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


class MindIEService:
    def __init__(self, checkpoint: Path, *, max_batch_size: int = 4, max_seq_len: int = 256, num_blocks: int = 16,
                 role: str = "standard", max_prefill_tokens: int = 64, max_input_len: int = 32, max_iter_times: int = 32,
                 load_tokenizer: bool = True, **model_config: Any) -> None:
        from mindie_llm import _standin
        from mindie_llm.text_generator.adapter.generator_aclgraph import GeneratorAclGraph
        from mindie_llm.text_generator.generator import Generator

        _standin.reset_process_state()  # one service = one MindIE process
        self.checkpoint = Path(checkpoint)
        self.warmup_steps: list[Step] = []
        self.steps: list[Step] = []
        self.replays: Counter[int] = Counter()
        self.updates: list[tuple[int, list[dict[str, Any]]]] = []
        config = {"model_id": str(self.checkpoint), "backend_type": "torch", "rank": 0, "world_size": 1, "local_rank": 0,
                  "npu_device_id": 0, "cpu_mem": 0, "npu_mem": self._npu_mem_gib(num_blocks), "block_size": BLOCK_SIZE,
                  "max_seq_len": max_seq_len, "max_iter_times": max_iter_times, "max_input_len": max_input_len,
                  "max_batch_size": max_batch_size, "max_prefill_batch_size": max_batch_size,
                  "max_prefill_tokens": max_prefill_tokens, "trust_remote_code": False, "role": role,
                  "load_tokenizer": load_tokenizer, **model_config}
        self.log = _LogRecords()
        logging.getLogger("mindie_llm").addHandler(self.log)
        forward = GeneratorAclGraph.forward
        GeneratorAclGraph.forward = self._recording(forward, self.warmup_steps)  # start-up only
        try:
            self.generator = Generator(config)
        except BaseException:
            self.__exit__()
            raise
        finally:
            GeneratorAclGraph.forward = forward
        self.backend = self.generator.generator_backend
        self.runner = self.backend.model_wrapper.model_runner
        self.npu_cache = self.backend.cache_pool.npu_cache
        self.free_blocks = list(range(self.generator.kvcache_settings.num_npu_blocks))
        for descriptor, graph in getattr(self.runner.model, "graphs", {}).items():
            self._watch(descriptor.num_tokens, graph)

    def __enter__(self) -> MindIEService:
        return self

    def __exit__(self, *exc: object) -> None:
        logging.getLogger("mindie_llm").removeHandler(self.log)

    @property
    def captured_sizes(self) -> list[int]:
        return sorted(descriptor.num_tokens for descriptor in getattr(self.runner.model, "graphs", {}))

    @property
    def update_failures(self) -> list[str]:
        return [m for m in self.log.messages if m.startswith("Ignore graph update failure")]

    def _npu_mem_gib(self, num_blocks: int) -> float:
        """``npuMemSize`` (GiB) that gives ``num_blocks`` blocks, from the cache geometry the model's router announces."""
        from mindie_llm.modeling.model_wrapper.model_info import ModelInfo
        from mindie_llm.runtime.config.load_config import LoadConfig
        from mindie_llm.runtime.models import get_router_ins
        from mindie_llm.text_generator.utils.npu_mem_tool import calc_block_mem

        config = get_router_ins(LoadConfig(model_name_or_path=str(self.checkpoint), load_tokenizer=False)).config
        dtype = config.torch_dtype
        info = ModelInfo(None, dtype, torch.tensor([], dtype=dtype).element_size(), config.num_hidden_layers,
                         config.num_key_value_heads, config.head_dim)
        return num_blocks * calc_block_mem(info, BLOCK_SIZE) / 1024 ** 3

    def _recording(self, forward: Any, steps: list[Step]) -> Any:
        """Wrap ``GeneratorAclGraph.forward`` to note what the runner did with each step."""
        def recorded(backend: Any, model_inputs: Any, **kwargs: Any) -> Any:
            lengths = [int(n) for n in model_inputs.context_length]
            replays = sum(self.replays.values())
            logits = forward(backend, model_inputs, **kwargs)
            descriptor = model_inputs.forward_context.batch_descriptor
            steps.append(Step(model_inputs.is_prefill, lengths, descriptor.num_tokens, sum(self.replays.values()) > replays,
                              logits if steps is self.warmup_steps else None))
            return logits

        return recorded

    def _watch(self, size: int, graph: Any) -> None:
        """Count this captured graph's replays and keep each update's input (MindIE's own calls pass through)."""
        replay, update = graph.replay, graph.update

        def counted_replay() -> None:
            self.replays[size] += 1
            replay()

        def recorded_update(cpu_update_input: list[dict[str, Any]]) -> None:
            self.updates.append((size, json.loads(json.dumps(cpu_update_input))))
            update(cpu_update_input)

        graph.replay, graph.update = counted_replay, recorded_update

    def run(self, requests: list[Request]) -> list[Generated]:
        """Serve ``requests`` to completion; returns what each one generated."""
        from mindie_llm.text_generator.generator import _TGSequence

        forward = self._recording(type(self.backend).forward, self.steps)
        results = [Generated() for _ in requests]
        pending = list(range(len(requests)))
        running: list[tuple[int, Any]] = []
        step = 0
        while pending or running:
            arrived = [i for i in pending if requests[i].arrival <= step]
            if arrived:
                pending = [i for i in pending if i not in arrived]
                batch = [(i, _TGSequence(list(requests[i].prompt), self._allocate(len(requests[i].prompt))))
                         for i in arrived]
                running += batch
                is_prefill = True
            elif running:
                for _, sequence in running:
                    if len(sequence.token_ids) > len(sequence.block_table) * BLOCK_SIZE:
                        sequence.block_table += self._allocate(1)
                batch, is_prefill = list(running), False
            else:
                step += 1
                continue
            self.generator.check_batch_size_limit(is_prefill, False, len(batch))
            logits = self._forward(forward, [s for _, s in batch], is_prefill)
            for (i, sequence), row in zip(batch, logits, strict=True):
                results[i].logits.append(row)
                results[i].tokens.append(int(row.argmax()))
                sequence.token_ids.append(results[i].tokens[-1])
                if len(results[i].tokens) == requests[i].max_new_tokens:
                    running.remove((i, sequence))
                    self.free_blocks = sorted(self.free_blocks + sequence.block_table)
            step += 1
        return results

    def _forward(self, forward: Any, sequences: list[Any], is_prefill: bool) -> torch.Tensor:
        from mindie_llm.text_generator.generator import _compose_model_inputs

        model_inputs = _compose_model_inputs(sequences, is_prefill, BLOCK_SIZE, self.backend.model_wrapper.generate_position_ids)
        return forward(self.backend, model_inputs, q_lens=None, spec_mask=None, sub_model_inputs=None,
                       hidden_states=None).float()

    def _allocate(self, tokens: int) -> list[int]:
        """Blocks for ``tokens`` more tokens from the free list, lowest ids first (freed ones are reused)."""
        count = math.ceil(tokens / BLOCK_SIZE)
        if count > len(self.free_blocks):
            raise RuntimeError(f"KV pool exhausted: {count} blocks wanted, {len(self.free_blocks)} free")
        blocks, self.free_blocks = self.free_blocks[:count], self.free_blocks[count:]
        return blocks
