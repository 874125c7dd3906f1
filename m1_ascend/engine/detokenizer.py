"""Incremental detokenization with stop strings, cheap per step and safe to stream.

Decoding the whole output every step costs O(n) per token; instead only the tokens after a
settled prefix are decoded (the usual prefix/read offset scheme), and text is emitted only
once it no longer ends in an incomplete UTF-8 sequence. While a request runs, a tail that
could still grow into a stop string is held back, so a streaming client never receives text
that is later cut off.
"""

from __future__ import annotations

from typing import Protocol

REPLACEMENT_CHAR = "\ufffd"


class Decoder(Protocol):
    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str: ...


class IncrementalText:
    """Text of one request's output ids; ``append`` reports whether a stop string appeared."""

    def __init__(self, tokenizer: Decoder | None, stop: list[str]) -> None:
        self.tokenizer = tokenizer
        self.stop = stop
        self.text = ""
        self._prefix_offset = 0
        self._read_offset = 0

    def append(self, output_ids: list[int]) -> bool:
        """Take the whole output so far (the new ids are at its end); True if it hit a stop string."""
        if self.tokenizer is None:
            return False
        prefix = self.tokenizer.decode(output_ids[self._prefix_offset:self._read_offset])
        current = self.tokenizer.decode(output_ids[self._prefix_offset:])
        if len(current) <= len(prefix) or current.endswith(REPLACEMENT_CHAR):
            return False  # nothing settled yet (e.g. half of a multi-byte character)
        old_len = len(self.text)
        self.text += current[len(prefix):]
        self._prefix_offset, self._read_offset = self._read_offset, len(output_ids)
        return self._cut_at_stop(old_len)

    def _cut_at_stop(self, old_len: int) -> bool:
        if not self.stop:
            return False
        # A match must end inside the new text, so it starts at most len(stop) - 1 chars earlier.
        start = max(0, old_len - max(len(s) for s in self.stop) + 1)
        hits = [i for i in (self.text.find(s, start) for s in self.stop) if i >= 0]
        if not hits:
            return False
        self.text = self.text[:min(hits)]
        return True

    def visible(self, final: bool) -> str:
        """The text a client may see now: all of it once final, else minus a possible stop-string start."""
        if final or not self.stop:
            return self.text
        held = max((k for s in self.stop for k in range(1, len(s)) if self.text.endswith(s[:k])), default=0)
        return self.text[:len(self.text) - held]
