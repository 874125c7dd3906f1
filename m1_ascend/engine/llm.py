"""``LLM``: the offline batch API in the style of vLLM (``generate`` and ``chat``)."""

from __future__ import annotations

import itertools
import numbers
import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ..modeling import BaichuanM1ForCausalLM
from .llm_engine import LLMEngine
from .outputs import RequestOutput
from .sampling_params import SamplingParams

# A progress bar is shown from this many requests on, unless ``use_tqdm`` says otherwise.
PROGRESS_MIN_REQUESTS = 16

Messages = Sequence[Mapping[str, Any]]


def _plain(value: Any) -> Any:
    """torch tensors and numpy arrays (and their scalars) as Python lists and ints."""
    return value.tolist() if hasattr(value, "tolist") else value


def as_token_id_lists(prompt_token_ids: Any) -> list[list[int]]:
    """One prompt (a flat sequence of ids) or a batch (a sequence of them), as lists of ints.

    Accepts lists, tuples, 1-D/2-D torch tensors and numpy arrays, and lists of tensors or arrays,
    as vLLM does.
    """
    items = [_plain(v) for v in _plain(prompt_token_ids)]
    flat = not any(isinstance(v, (list, tuple)) for v in items)
    batch = [items] if flat else [list(_plain(p)) if isinstance(p, (list, tuple)) else p for p in items]
    for prompt in batch:
        if not isinstance(prompt, list) or any(not isinstance(t, numbers.Integral) or isinstance(t, bool)
                                               for t in prompt):
            raise ValueError("prompt_token_ids must hold integer token ids (one prompt) or sequences of them")
    return [[int(t) for t in prompt] for prompt in batch]


class LLM:
    """Run many prompts to completion with continuous batching; results come back in input order.

    ``model`` is a checkpoint directory, an in-memory ``BaichuanM1ForCausalLM``, or None for
    the demo checkpoint (built on first use). The other arguments go to ``LLMEngine``.
    """

    def __init__(self, model: str | os.PathLike[str] | BaichuanM1ForCausalLM | None = None, device: str = "cpu",
                 dtype: str | torch.dtype | None = None, max_num_seqs: int = 64, max_num_batched_tokens: int = 2048,
                 block_size: int = 128, kv_cache_memory: int | None = None, enable_prefix_caching: bool = True,
                 **engine_kwargs: Any) -> None:
        self.engine = LLMEngine(model=model, device=device, dtype=dtype, max_num_seqs=max_num_seqs,
                                max_num_batched_tokens=max_num_batched_tokens, block_size=block_size,
                                kv_cache_memory=kv_cache_memory, enable_prefix_caching=enable_prefix_caching,
                                **engine_kwargs)
        self._ids = itertools.count()

    @property
    def tokenizer(self) -> Any:
        return self.engine.tokenizer

    def _require_tokenizer(self, what: str) -> Any:
        if self.engine.tokenizer is None:
            raise ValueError(f"{what} needs a tokenizer; this model has none (pass prompt_token_ids instead)")
        return self.engine.tokenizer

    def generate(self, prompts: str | Sequence[str] | None = None,
                 sampling_params: SamplingParams | Sequence[SamplingParams] | None = None,
                 prompt_token_ids: Sequence[int] | Sequence[Sequence[int]] | torch.Tensor | Any | None = None,
                 use_tqdm: bool | None = None) -> list[RequestOutput]:
        """Complete text prompts or token-id prompts (exactly one of the two; ids as in ``as_token_id_lists``)."""
        if (prompts is None) == (prompt_token_ids is None):
            raise ValueError("pass either prompts or prompt_token_ids")
        if prompts is not None:
            tokenizer = self._require_tokenizer("text prompts")
            texts = [prompts] if isinstance(prompts, str) else list(prompts)
            id_lists = [tokenizer.encode(text) for text in texts]
        else:
            id_lists = as_token_id_lists(prompt_token_ids)
        return self._run(id_lists, sampling_params, use_tqdm)

    def chat(self, messages: Messages | Sequence[Messages],
             sampling_params: SamplingParams | Sequence[SamplingParams] | None = None,
             use_tqdm: bool | None = None) -> list[RequestOutput]:
        """Answer one conversation (a list of ``{"role", "content"}`` dicts) or a list of them."""
        tokenizer = self._require_tokenizer("chat")
        single = len(messages) > 0 and isinstance(messages[0], Mapping)
        conversations = [messages] if single else list(messages)
        id_lists = [tokenizer.apply_chat_template(list(c), add_generation_prompt=True) for c in conversations]
        return self._run(id_lists, sampling_params, use_tqdm)

    def _run(self, id_lists: list[list[int]], sampling_params: SamplingParams | Sequence[SamplingParams] | None,
             use_tqdm: bool | None) -> list[RequestOutput]:
        if sampling_params is None or isinstance(sampling_params, SamplingParams):
            params = [sampling_params or SamplingParams()] * len(id_lists)
        else:
            params = list(sampling_params)
            if len(params) != len(id_lists):
                raise ValueError(f"got {len(params)} sampling_params for {len(id_lists)} prompts")
        engine = self.engine
        request_ids = [f"llm-{next(self._ids)}" for _ in id_lists]
        pending = set(request_ids)
        results: dict[str, RequestOutput] = {}
        show = len(id_lists) >= PROGRESS_MIN_REQUESTS if use_tqdm is None else use_tqdm
        try:
            for request_id, ids, p in zip(request_ids, id_lists, params, strict=True):
                engine.add_request(request_id, ids, p)
            with _progress(len(id_lists), show) as bar:
                while pending:
                    for output in engine.step():
                        if output.finished and output.request_id in pending:
                            pending.discard(output.request_id)
                            results[output.request_id] = output
                            bar.update(1)
        finally:  # on an error or Ctrl-C, leave nothing of this call in the engine
            for request_id in pending:
                engine.abort_request(request_id)
        return [results[r] for r in request_ids]


def _progress(total: int, show: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc="generating", unit="req", disable=not show)
