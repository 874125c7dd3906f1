"""One request as the scheduler and the block manager see it."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import torch

from .detokenizer import IncrementalText
from .outputs import RequestOutput, TokenLogprob
from .sampling_params import SamplingParams
from .structured_output import GrammarState


class SequenceStatus(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"


@dataclass(eq=False)
class Sequence:
    """Token history, progress through it and the cache resources it holds.

    ``num_computed_tokens`` counts tokens whose K/V are in the cache; the tokens after it are
    fed to the model next (the whole rest of the prompt in chunks, then one token per step).
    ``global_blocks[i]`` holds tokens ``[i*bs, (i+1)*bs)`` in the global-layer pool;
    ``sliding_blocks[i]`` the same tokens in the sliding-window pool, or None once they have
    left the window. ``slot`` indexes the per-layer conv state.

    ``cache_salt`` seeds the first block hash: the identity of the LoRA adapter (name and load
    generation), so K/V computed under other weights is never reused. ``leader``: a sibling
    choice of the same prompt (``n`` > 1) waits to be scheduled until the leader's prompt is
    computed, so it finds the prompt's blocks in the prefix cache. ``budget_end``: the length at
    which the request ends with ``"length"``.
    """

    request_id: str
    prompt_token_ids: list[int]
    params: SamplingParams
    arrival: int
    text: IncrementalText
    generator: torch.Generator | None = None
    token_ids: list[int] = field(default_factory=list)
    status: SequenceStatus = SequenceStatus.WAITING
    num_computed_tokens: int = 0
    num_cached_tokens: int = 0
    global_blocks: list[int] = field(default_factory=list)
    sliding_blocks: list[int | None] = field(default_factory=list)
    block_hashes: list[bytes] = field(default_factory=list)
    slot: int | None = None
    finish_reason: str | None = None
    adapter: str | None = None  # LoRA adapter serving this request (finetune.adapters); None = base model
    cache_salt: bytes = b""
    leader: Sequence | None = None
    budget_end: int = 0
    grammar: GrammarState | None = None
    logprobs: list[TokenLogprob] | None = None
    prompt_logprobs: list[TokenLogprob | None] | None = None

    def __post_init__(self) -> None:
        self.token_ids = list(self.prompt_token_ids)
        if self.params.logprobs is not None:
            self.logprobs = []
        if self.params.prompt_logprobs is not None:
            self.prompt_logprobs = [None]  # the first prompt token has no context

    @property
    def num_output_tokens(self) -> int:
        return len(self.token_ids) - self.num_prompt_tokens

    @property
    def waits_for_leader(self) -> bool:
        leader = self.leader
        return leader is not None and not leader.finished and leader.num_computed_tokens < leader.num_prompt_tokens

    def __len__(self) -> int:
        return len(self.token_ids)

    @property
    def num_prompt_tokens(self) -> int:
        return len(self.prompt_token_ids)

    @property
    def output_token_ids(self) -> list[int]:
        return self.token_ids[self.num_prompt_tokens:]

    @property
    def num_uncomputed_tokens(self) -> int:
        return len(self.token_ids) - self.num_computed_tokens

    @property
    def finished(self) -> bool:
        return self.status is SequenceStatus.FINISHED

    def to_output(self) -> RequestOutput:
        return RequestOutput(
            request_id=self.request_id,
            prompt_token_ids=list(self.prompt_token_ids),
            token_ids=self.output_token_ids,
            text=self.text.visible(final=self.finished),
            finish_reason=self.finish_reason,
            num_cached_tokens=self.num_cached_tokens,
            logprobs=None if self.logprobs is None else list(self.logprobs),
            prompt_logprobs=None if self.prompt_logprobs is None else list(self.prompt_logprobs),
        )
