"""One request as the scheduler and the block manager see it."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import torch

from .detokenizer import IncrementalText
from .outputs import RequestOutput
from .sampling_params import SamplingParams


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

    def __post_init__(self) -> None:
        self.token_ids = list(self.prompt_token_ids)

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
        )
