"""What the engine hands back for a request: cumulative ids and text, log-probabilities, and why it ended."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TokenLogprob:
    """Log-probability of one token under the model's own distribution, and the ``top`` alternatives.

    The distribution is the model's raw next-token softmax, before any sampling processor
    (penalties, bias, temperature, top-k/p, grammar masks), as in vLLM. ``top`` is sorted from the
    most likely down and may or may not contain ``token_id``.
    """

    token_id: int
    logprob: float
    top: tuple[tuple[int, float], ...] = ()


@dataclass
class RequestOutput:
    """State of one request after a step; ``finish_reason`` stays None until it ends.

    ``finish_reason`` is ``"stop"`` (end-of-sequence id, a stop id, a stop string, or the end of
    the request's grammar), ``"length"`` (``max_tokens`` or the end of the context) or ``"abort"``.
    ``logprobs`` has one entry per output token when ``SamplingParams.logprobs`` is set;
    ``prompt_logprobs`` one per prompt token (None for the first, which has no context) when
    ``SamplingParams.prompt_logprobs`` is set.
    """

    request_id: str
    prompt_token_ids: list[int]
    token_ids: list[int]
    text: str
    finish_reason: str | None
    num_cached_tokens: int = 0
    logprobs: list[TokenLogprob] | None = None
    prompt_logprobs: list[TokenLogprob | None] | None = None

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None
