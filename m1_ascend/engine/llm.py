"""``LLM``: the offline batch API in the style of vLLM (``generate`` and ``chat``)."""

from __future__ import annotations

import itertools
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
                 prompt_token_ids: Sequence[int] | Sequence[Sequence[int]] | None = None,
                 use_tqdm: bool | None = None) -> list[RequestOutput]:
        """Complete text prompts or token-id prompts (exactly one of the two)."""
        if (prompts is None) == (prompt_token_ids is None):
            raise ValueError("pass either prompts or prompt_token_ids")
        if prompts is not None:
            tokenizer = self._require_tokenizer("text prompts")
            texts = [prompts] if isinstance(prompts, str) else list(prompts)
            id_lists = [tokenizer.encode(text) for text in texts]
        else:
            assert prompt_token_ids is not None
            flat = len(prompt_token_ids) > 0 and isinstance(prompt_token_ids[0], int)
            id_lists = [list(prompt_token_ids)] if flat else [list(p) for p in prompt_token_ids]  # type: ignore[arg-type]
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
