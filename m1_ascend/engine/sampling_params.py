"""Per-request sampling settings, validated when they are built so a bad request fails at once."""

from __future__ import annotations

from dataclasses import dataclass

from .structured_output import GrammarSpec

MAX_LOGPROBS = 20
MAX_ABS_PENALTY = 2.0
MAX_ABS_LOGIT_BIAS = 100.0


@dataclass
class SamplingParams:
    """How to pick each next token and when to stop (the vLLM names and meanings).

    ``temperature == 0`` means greedy. ``top_k == -1`` and ``top_p == 1`` disable those filters.
    ``repetition_penalty`` follows the CTRL rule used by transformers: logits of tokens already
    in the prompt or output are divided by it when positive and multiplied when negative.
    ``presence_penalty`` and ``frequency_penalty`` follow OpenAI: a token's logit loses
    ``frequency_penalty * count + presence_penalty * (count > 0)``, counting the output so far.
    ``logit_bias`` adds to the logits of the given ids. ``min_tokens``: no stop id before that
    many output tokens. ``stop`` strings end the text before the stop string; ``stop_token_ids``
    and the tokenizer's end-of-sequence ids (unless ``ignore_eos``) end it after the token.
    ``grammar``: the output must match it (structured output). ``logprobs`` / ``prompt_logprobs``:
    report each output / prompt token's log-probability with that many alternatives (0: none).
    """

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: dict[int, float] | None = None
    max_tokens: int = 16
    min_tokens: int = 0
    stop: str | list[str] | None = None
    stop_token_ids: list[int] | None = None
    seed: int | None = None
    ignore_eos: bool = False
    grammar: GrammarSpec | None = None
    logprobs: int | None = None
    prompt_logprobs: int | None = None

    def __post_init__(self) -> None:
        # Normalised once so the engine only ever sees lists and dicts.
        self.stop = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        self.stop_token_ids = [int(t) for t in (self.stop_token_ids or [])]
        self.logit_bias = {int(t): float(b) for t, b in (self.logit_bias or {}).items()}
        self._validate()

    def _validate(self) -> None:
        if not self.temperature >= 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k != -1 and self.top_k < 1:
            raise ValueError(f"top_k must be -1 (disabled) or >= 1, got {self.top_k}")
        if not self.repetition_penalty > 0:
            raise ValueError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")
        for name in ("presence_penalty", "frequency_penalty"):
            if not -MAX_ABS_PENALTY <= getattr(self, name) <= MAX_ABS_PENALTY:
                raise ValueError(f"{name} must be in [-2, 2], got {getattr(self, name)}")
        assert self.logit_bias is not None
        if any(t < 0 or not -MAX_ABS_LOGIT_BIAS <= b <= MAX_ABS_LOGIT_BIAS for t, b in self.logit_bias.items()):
            raise ValueError("logit_bias maps token ids >= 0 to biases in [-100, 100]")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if not 0 <= self.min_tokens <= self.max_tokens:
            raise ValueError(f"min_tokens must be in [0, max_tokens], got {self.min_tokens}")
        if any(not isinstance(s, str) or not s for s in self.stop):
            raise ValueError("stop strings must be non-empty strings")
        if any(t < 0 for t in self.stop_token_ids):
            raise ValueError(f"stop_token_ids must be non-negative, got {self.stop_token_ids}")
        for name in ("logprobs", "prompt_logprobs"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= MAX_LOGPROBS:
                raise ValueError(f"{name} must be in [0, {MAX_LOGPROBS}], got {value}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0
