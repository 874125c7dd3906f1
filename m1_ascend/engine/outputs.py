"""What the engine hands back for a request: cumulative ids and text, and why it ended."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class RequestOutput:
    """State of one request after a step; ``finish_reason`` stays None until it ends.

    ``finish_reason`` is ``"stop"`` (end-of-sequence id, a stop id or a stop string),
    ``"length"`` (``max_tokens`` or the end of the context) or ``"abort"``.
    """

    request_id: str
    prompt_token_ids: list[int]
    token_ids: list[int]
    text: str
    finish_reason: str | None
    num_cached_tokens: int = 0

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None
