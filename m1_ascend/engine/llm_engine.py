"""``LLMEngine``: requests in, one scheduler step at a time, outputs out (not thread-safe).

Wires the parts together: the block manager sizes its pools from ``memory_plan``, the
scheduler picks each step's tokens, the model runner computes them over the paged cache, the
sampler chooses next tokens, and this module decides when a request ends.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch

from ..finetune.adapters import AdapterBank
from ..kernels import KernelBackend, get_backend, resolve_device
from ..modeling import BaichuanM1ForCausalLM
from .block_manager import BlockManager
from .decode_graph import bucket_sizes, capture_blocker
from .detokenizer import IncrementalText
from .errors import RequestRejected, StepFailed
from .loader import load_model, load_tokenizer
from .memory_plan import blocks_for_tokens, kv_cache_demand, size_pools, window_blocks
from .model_runner import ModelRunner
from .outputs import RequestOutput
from .sampler import Sampler, token_logprobs
from .sampling_params import SamplingParams
from .scheduler import Scheduler
from .sequence import Sequence
from .structured_output import GrammarCompiler, GrammarError

if TYPE_CHECKING:
    from ..tokenizer import M1Tokenizer

logger = logging.getLogger(__name__)

# Decode graphs by default? On an NPU yes: a step's host overhead is of the order of its device time.
# On the CPU no: torch.compile costs tens of seconds per batch bucket at start-up (docs/engine.md).
EAGER_BY_DEFAULT = {"npu": False, "cpu": True}

# Without an explicit kv_cache_memory a CPU engine takes at most this share of the host's RAM.
CPU_KV_FRACTION = 0.25
# ... and an accelerator this share of the device memory still free after loading the weights.
DEVICE_KV_FRACTION = 0.85


def default_kv_budget(device: torch.device) -> int:
    if device.type == "cpu":
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * CPU_KV_FRACTION)
    free, _ = getattr(torch, device.type).mem_get_info(device)
    return int(free * DEVICE_KV_FRACTION)


class LLMEngine:
    """Continuous-batching engine over the paged KV cache; see the module docstring and docs/engine.md."""

    def __init__(
        self,
        model: str | os.PathLike[str] | BaichuanM1ForCausalLM | None = None,
        device: str = "cpu",
        dtype: str | torch.dtype | None = None,
        max_num_seqs: int = 64,
        max_num_batched_tokens: int = 2048,
        block_size: int = 128,
        kv_cache_memory: int | None = None,
        enable_prefix_caching: bool = True,
        tokenizer: M1Tokenizer | None = None,
        adapters: Mapping[str, str | os.PathLike[str]] | None = None,
        backend: KernelBackend | None = None,
        enforce_eager: bool | None = None,
        decode_graph_sizes: list[int] | None = None,
    ) -> None:
        """``tokenizer`` overrides the checkpoint's; ``backend`` the device's kernel backend (emulators, tests).

        ``enforce_eager`` (vLLM's name) runs every step eagerly; otherwise pure decode steps run as
        graphs (``decode_graph``), compiled or captured here, before the first request. None: graphs
        on an NPU, eager on the CPU (see ``EAGER_BY_DEFAULT`` and docs/engine.md for the measurements).
        ``decode_graph_sizes``: the batch buckets to make graphs for (default 1, 2, 4, then steps of 8 up
        to ``max_num_seqs``); larger decode batches run eagerly.
        """
        for name, value in (("max_num_seqs", max_num_seqs), ("max_num_batched_tokens", max_num_batched_tokens),
                            ("block_size", block_size)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        self.device_name = resolve_device(device)
        backend = backend if backend is not None else get_backend(self.device_name)
        # The backend travels in each step's ForwardContext; the model object itself is left as given.
        self.model, model_dir = load_model(model, self.device_name, dtype)
        self.tokenizer = tokenizer if tokenizer is not None else load_tokenizer(model_dir)
        self.config = self.model.config
        param = next(self.model.parameters())
        dtype_bytes = param.element_size()

        model_len = min(self.config.model_max_length, self.config.max_position_embeddings)
        demand = kv_cache_demand(self.config, model_len, block_size, dtype_bytes, max_num_seqs,
                                 max_num_batched_tokens, enable_prefix_caching)
        budget = kv_cache_memory if kv_cache_memory is not None else min(demand, default_kv_budget(param.device))
        pools = size_pools(self.config, budget, block_size, dtype_bytes, max_num_seqs, max_num_batched_tokens,
                           model_len, enable_prefix_caching)
        self.max_model_len = min(model_len, pools.global_blocks * block_size)
        needed_sliding = min(window_blocks(self.config.sliding_window, block_size),
                             blocks_for_tokens(self.max_model_len, block_size))
        if pools.global_blocks < 1 or pools.sliding_blocks < needed_sliding:
            raise ValueError(
                f"kv_cache_memory={budget} B is too small: one sequence needs at least {needed_sliding} sliding-window "
                f"blocks of {block_size} tokens, got {pools.sliding_blocks} (and {pools.global_blocks} global blocks)")
        self.block_manager = BlockManager(pools.global_blocks, pools.sliding_blocks, pools.num_slots, block_size,
                                          self.config.sliding_window, enable_prefix_caching)
        self.scheduler = Scheduler(self.block_manager, max_num_seqs, max_num_batched_tokens)
        # LoRA adapters (name -> peft directory) served per request beside the shared base weights.
        self.adapters = AdapterBank(self.model)
        for name, path in (adapters or {}).items():
            self.adapters.add(name, path)
        self.runner = ModelRunner(self.model, backend, pools, block_size, enable_prefix_caching, self.adapters)
        self.enforce_eager = EAGER_BY_DEFAULT[self.device_name] if enforce_eager is None else enforce_eager
        blocker = None if self.enforce_eager else capture_blocker(self.runner)
        if blocker and enforce_eager is None:  # the device's default, not the caller's demand: say so and go eager
            logger.warning("decode graphs off, every step runs eagerly: %s", blocker)
            self.enforce_eager = True
        elif blocker:
            raise ValueError(f"enforce_eager=False, but decode steps cannot run as graphs here: {blocker}")
        if not self.enforce_eager:
            sizes = decode_graph_sizes or bucket_sizes(max_num_seqs)
            if min(sizes) < 1 or max(sizes) > max_num_seqs:
                raise ValueError(f"decode_graph_sizes must lie in [1, max_num_seqs={max_num_seqs}], got {sizes}")
            self.runner.enable_graphs(sizes, self.max_model_len, progress=logger.info)
        self.eos_token_ids = self._eos_ids()
        self.sampler = Sampler(param.device, self.eos_token_ids)
        self._grammar_compiler: GrammarCompiler | None = None
        self._requests: dict[str, Sequence] = {}
        self._arrivals = 0

    def _eos_ids(self) -> set[int]:
        if self.tokenizer is not None:
            return set(self.tokenizer.stop_token_ids)
        eos = self.config.eos_token_id
        return set() if eos is None else {eos} if isinstance(eos, int) else set(eos)

    @property
    def grammar_compiler(self) -> GrammarCompiler:
        """Structured output's compiler over this engine's vocabulary (built on first use; thread-safe)."""
        if self.tokenizer is None:
            raise GrammarError("structured output needs a tokenizer; this model directory has none")
        if self._grammar_compiler is None:
            self._grammar_compiler = GrammarCompiler(self.tokenizer, self.config.vocab_size,
                                                     self.tokenizer.stop_token_ids)  # the tokenizer's eos first
        return self._grammar_compiler

    # -- requests ----------------------------------------------------------------------------
    def add_request(self, request_id: str, prompt_token_ids: list[int], params: SamplingParams,
                    adapter: str | None = None, leader: str | None = None) -> None:
        """Queue a request; raises ``RequestRejected`` (nothing queued) when it can never run.

        ``adapter`` names a LoRA adapter in ``self.adapters`` to serve it with (None: the base model).
        ``leader`` names a queued request with the same prompt (another choice of an ``n`` > 1 request):
        this one starts once the leader's prompt is computed, from its blocks in the prefix cache.
        """
        if request_id in self._requests:
            raise RequestRejected(f"request id {request_id!r} is already in use")
        if not prompt_token_ids:
            raise RequestRejected("the prompt is empty")
        vocab = self.config.vocab_size
        bad = [t for t in prompt_token_ids if not 0 <= t < vocab]
        if bad:
            raise RequestRejected(f"prompt token id {bad[0]} is outside the vocabulary [0, {vocab})")
        if len(prompt_token_ids) >= self.max_model_len:
            model_len = min(self.config.model_max_length, self.config.max_position_embeddings)
            limit = "the model's context" if self.max_model_len == model_len else "the KV cache"
            raise RequestRejected(
                f"the prompt has {len(prompt_token_ids)} tokens but {limit} holds {self.max_model_len} tokens per "
                f"sequence, including at least one generated token")
        if params.stop and self.tokenizer is None:
            raise RequestRejected("stop strings need a tokenizer; this model directory has none")
        if adapter is not None and adapter not in self.adapters:
            raise RequestRejected(f"unknown adapter {adapter!r}; loaded: {', '.join(self.adapters.names) or 'none'}")
        try:
            grammar = self.grammar_compiler.new_state(params.grammar) if params.grammar is not None else None
        except GrammarError as exc:
            raise RequestRejected(f"the grammar cannot be used: {exc}") from None
        generator = torch.Generator().manual_seed(params.seed) if params.seed is not None else None
        prompt = [int(t) for t in prompt_token_ids]
        seq = Sequence(request_id=request_id, prompt_token_ids=prompt, params=params,
                       arrival=self._arrivals, text=IncrementalText(self.tokenizer, list(params.stop)),
                       generator=generator, adapter=adapter, cache_salt=self.adapters.identity(adapter),
                       leader=self._requests.get(leader) if leader is not None else None,
                       budget_end=min(len(prompt) + params.max_tokens, self.max_model_len), grammar=grammar)
        self._arrivals += 1
        self._requests[request_id] = seq
        self.scheduler.add(seq)

    def abort_request(self, request_id: str) -> None:
        """End a request now and give back its blocks and slot; unknown or finished ids are ignored."""
        seq = self._requests.pop(request_id, None)
        if seq is not None:
            self.scheduler.finish(seq, "abort")

    def has_unfinished_requests(self) -> bool:
        return self.scheduler.has_unfinished()

    def num_waiting(self) -> int:
        return len(self.scheduler.waiting)

    def num_running(self) -> int:
        return len(self.scheduler.running)

    def stats(self) -> dict[str, Any]:
        return {"num_waiting": self.num_waiting(), "num_running": self.num_running(),
                "num_preemptions": self.scheduler.num_preemptions, **self.block_manager.stats()}

    # -- stepping ----------------------------------------------------------------------------
    def step(self) -> list[RequestOutput]:
        """One scheduler step: outputs of the requests that got a new token (finished ones included)."""
        batch = self.scheduler.schedule()
        if not batch:
            return []
        try:
            sampled_seqs, logits, prompt_logits = self.runner.execute(batch)
            for seq, chunk_logits in prompt_logits:
                self._record_prompt_logprobs(seq, chunk_logits)
            tokens = self.sampler(logits, sampled_seqs) if sampled_seqs else []
        except Exception as exc:
            # The conv state of these sequences may be half-updated: they cannot continue.
            failed = []
            for seq in batch.seqs:
                self._finish(seq, "abort")
                failed.append(seq.to_output())
            raise StepFailed(f"model step failed ({type(exc).__name__}: {exc}); "
                             f"{len(failed)} requests aborted", failed) from exc
        for seq, n in zip(batch.seqs, batch.num_tokens, strict=True):
            before = seq.num_computed_tokens
            seq.num_computed_tokens += n
            self.block_manager.commit(seq, before)
        outputs = []
        for seq, token in zip(sampled_seqs, tokens, strict=True):
            seq.token_ids.append(token)
            if seq.grammar is not None:
                seq.grammar.accept(token)
            reason = self._finish_reason(seq, token)
            if reason is not None:
                self._finish(seq, reason)
            outputs.append(seq.to_output())
        return outputs

    @staticmethod
    def _record_prompt_logprobs(seq: Sequence, chunk_logits: torch.Tensor) -> None:
        """Append the prompt log-probabilities of this chunk (a recomputed chunk adds only what is missing)."""
        assert seq.prompt_logprobs is not None and seq.params.prompt_logprobs is not None
        start = seq.num_computed_tokens + 1  # the prompt position the chunk's first row predicts
        skip = len(seq.prompt_logprobs) - start
        if skip >= len(chunk_logits):
            return
        targets = seq.prompt_token_ids[start + skip:start + len(chunk_logits)]
        logprobs = torch.log_softmax(chunk_logits[skip:].float(), dim=-1)
        seq.prompt_logprobs.extend(token_logprobs(logprobs, targets, [seq.params.prompt_logprobs] * len(targets)))

    def _finish_reason(self, seq: Sequence, token: int) -> str | None:
        params = seq.params
        if token in params.stop_token_ids or (not params.ignore_eos and token in self.eos_token_ids):
            return "stop"
        if seq.text.append(seq.output_token_ids):
            return "stop"
        if seq.grammar is not None and seq.grammar.finished:
            return "stop"
        if len(seq) >= seq.budget_end:
            return "length"
        return None

    def _finish(self, seq: Sequence, reason: str) -> None:
        self._requests.pop(seq.request_id, None)
        self.scheduler.finish(seq, reason)
