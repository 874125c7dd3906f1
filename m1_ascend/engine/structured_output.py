"""Structured output: a grammar (JSON schema, any JSON object, or Lark) enforced as a token mask while decoding.

The grammar engine is llguidance (Rust, no Python dependencies): it turns a grammar and the
tokenizer's real vocabulary (the bytes each id adds, ``M1Tokenizer.token_bytes``) into the set of
ids allowed next, so the output parses for any model, a random one included. JSON is compiled
without free whitespace (``whitespace_flexible: false``: separators are exactly ``,`` and ``:``),
so a model cannot pad forever.

A grammar must also *end* within the request's token budget. When the tokens left would not
suffice to close the output, ``GrammarState.forced_token`` takes over: it picks, among the allowed
ids, the one that closes soonest (stop ids, then ``]`` ``}`` ``"``, then separators and short
literals, ...; inside a string, where nearly every id is allowed, ``"`` first).
It plans by simulating that choice from the current state, so forcing starts only when needed.

Compiled grammars are cached by their source (a schema is compiled once, then copied per request).
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

if TYPE_CHECKING:
    from ..tokenizer import M1Tokenizer

GrammarKind = Literal["json_object", "json_schema", "lark"]
JSON_OPTIONS = {"whitespace_flexible": False}
# Grammars kept compiled; a hospital's integrations use a handful of schemas over and over.
CACHE_SIZE = 256
# Forcing is only planned in the last this-many tokens of a budget (planning costs one mask per token of the plan).
PLAN_HORIZON = 64
# Once a plan says closing takes L tokens, planning again waits until the budget is within L + this
# (a single token rarely lengthens the way out by more), or PLAN_HORIZON // 4 steps have passed.
PLAN_SLACK = 12
# Forcing starts while this many tokens are still spare: one free token can lengthen the way out
# (a backslash in a string needs the escaped character, ``\u`` four hex digits more).
FORCE_MARGIN = 6
_CLOSERS = frozenset(b'"]}')
_SHORT_LITERALS = frozenset([b"0", b"1", b"true", b"false", b"null", b"[", b"{"])


class GrammarError(ValueError):
    """The grammar or schema cannot be compiled; the message says why."""


@dataclass(frozen=True)
class GrammarSpec:
    """What a request's output must match. ``source`` is a JSON schema (as JSON text) or Lark text."""

    kind: GrammarKind
    source: str = ""

    @classmethod
    def json_schema(cls, schema: dict[str, Any]) -> GrammarSpec:
        return cls("json_schema", json.dumps(schema, separators=(",", ":")))  # key order = output order

    @classmethod
    def json_object(cls) -> GrammarSpec:
        return cls("json_object")

    @classmethod
    def lark(cls, grammar: str) -> GrammarSpec:
        return cls("lark", grammar)


def _import_llguidance() -> Any:
    try:
        import llguidance
    except ImportError as exc:  # a foreign environment installed with --no-deps
        raise GrammarError("structured output needs the 'llguidance' package (requirements/runtime.txt)") from exc
    return llguidance


def _closing_scores(table: Sequence[bytes | None], stop_ids: Sequence[int]) -> np.ndarray:
    """Lower closes sooner: stop ids, pure closers, separators, short literals, then the rest (shorter first)."""
    scores = np.empty(len(table), dtype=np.int64)
    for token_id, text in enumerate(table):
        if text is None:
            scores[token_id] = 10**6
        elif set(text) <= _CLOSERS:  # ] and } end a level; " may open a string that still has to close
            scores[token_id] = 1000 - len(text) + (10 if text.startswith(b'"') else 0)
        elif text in (b",", b":"):
            scores[token_id] = 1500  # ends a number (a digit would extend it)
        elif text in _SHORT_LITERALS or text.isdigit():
            scores[token_id] = 2000 + len(text)
        else:
            scores[token_id] = 4000 + len(text)
    scores[list(stop_ids)] = 0
    return scores


def unpack_bitmask(bitmask: np.ndarray, vocab_size: int) -> np.ndarray:
    """llguidance's int32 bitmask rows (bit ``i`` of the row = id ``i`` allowed) as bool ``[rows, vocab]``."""
    bits = np.unpackbits(bitmask.view(np.uint8), axis=-1, bitorder="little")
    return bits[..., :vocab_size].astype(bool)


class GrammarCompiler:
    """One per engine: the vocabulary in llguidance's form, and the cache of compiled grammars (thread-safe)."""

    def __init__(self, tokenizer: M1Tokenizer, vocab_size: int, stop_token_ids: Sequence[int]) -> None:
        llg = _import_llguidance()
        table = tokenizer.token_bytes(vocab_size)
        specials = [i for i, text in enumerate(table) if text is None]
        # Special ids get llguidance's marker byte 0xFF, so no grammar can produce them as text.
        wrapper = llg.TokenizerWrapper(_VocabView([b"\xff" + b"<%d>" % i if t is None else t for i, t in
                                                   enumerate(table)], specials, tokenizer, stop_token_ids[0]))
        self._llg = llg
        # The grammar ends with the first stop id, the tokenizer's eos (llguidance 1.6, the newest release with
        # wheels for glibc 2.28 hosts such as Kylin V10 on Kunpeng, takes one).
        self.tokenizer = llg.LLTokenizer(wrapper, n_vocab=vocab_size, eos_token=stop_token_ids[0])
        self.vocab_size = vocab_size
        self.stop_token_ids = frozenset(stop_token_ids)
        self.closing_scores = _closing_scores(table, stop_token_ids)
        # Inside a string almost every text token is allowed and only '"' ends it, so it goes first there.
        self.string_closing_scores = self.closing_scores.copy()
        self.string_closing_scores[[i for i, t in enumerate(table) if t == b'"']] = 1
        self.num_text_tokens = sum(t is not None for t in table)
        self._cache: OrderedDict[GrammarSpec, Any] = OrderedDict()
        self._lock = threading.Lock()

    def _grammar_text(self, spec: GrammarSpec) -> str:
        matcher = self._llg.LLMatcher
        if spec.kind == "json_object":
            return matcher.grammar_from_json_schema({"type": "object"}, defaults=JSON_OPTIONS)
        if spec.kind == "json_schema":
            try:
                return matcher.grammar_from_json_schema(spec.source, defaults=JSON_OPTIONS)
            except ValueError as exc:
                raise GrammarError(f"the schema is not a JSON object: {exc}") from None
        return matcher.grammar_from_lark(spec.source)

    def compile(self, spec: GrammarSpec) -> Any:
        """The compiled matcher for ``spec`` in its start state (shared: copy it, see ``new_state``)."""
        with self._lock:
            cached = self._cache.get(spec)
            if cached is not None:
                self._cache.move_to_end(spec)
                return cached
        matcher = self._llg.LLMatcher(self.tokenizer, self._grammar_text(spec), log_level=0)
        if matcher.is_error():
            raise GrammarError(matcher.get_error())
        with self._lock:
            self._cache[spec] = matcher
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        return matcher

    def new_state(self, spec: GrammarSpec) -> GrammarState:
        return GrammarState(self, self.compile(spec).deep_copy())


class _VocabView:
    """What ``llguidance.TokenizerWrapper`` reads: the token bytes, the special ids and an encoder."""

    def __init__(self, tokens: list[bytes], special_ids: list[int], tokenizer: M1Tokenizer, eos: int) -> None:
        self.tokens = tokens
        self.special_token_ids = special_ids
        self.eos_token_id = eos
        self.bos_token_id = None
        self._tokenizer = tokenizer

    def __call__(self, text: str | bytes) -> list[int]:
        return self._tokenizer.encode(text.decode("utf-8", errors="replace") if isinstance(text, bytes) else text)


class GrammarState:
    """One request's position in its grammar."""

    def __init__(self, compiler: GrammarCompiler, matcher: Any) -> None:
        self.compiler = compiler
        self.matcher = matcher
        # The closing path from the current state (None: not planned, or the model left it); the path is a
        # function of the state, so after taking its first id the rest is still exact and is reused.
        self._plan: list[int] | None = None
        self._plan_ends = False
        self._planned_len: int | None = None  # length of the last plan (PLAN_HORIZON if it did not end)
        self._since_plan = 0

    @property
    def finished(self) -> bool:
        """Nothing more can follow (the grammar reached its end, or a stop id was taken)."""
        return bool(self.matcher.is_stopped())

    def fill(self, bitmask_row: np.ndarray) -> None:
        self.matcher.unsafe_compute_mask_ptr(bitmask_row.ctypes.data, bitmask_row.nbytes)

    def accept(self, token: int) -> None:
        if not self.matcher.consume_token(token):
            raise RuntimeError(f"token {token} violates the grammar ({self.matcher.get_error()})")
        self._plan = self._plan[1:] if self._plan and self._plan[0] == token else None

    def _closing_choice(self, matcher: Any, row: np.ndarray) -> int:
        matcher.unsafe_compute_mask_ptr(row.ctypes.data, row.nbytes)
        allowed = unpack_bitmask(row, self.compiler.vocab_size)
        compiler = self.compiler
        in_string = allowed.sum() > compiler.num_text_tokens // 2
        scores = compiler.string_closing_scores if in_string else compiler.closing_scores
        return int(np.where(allowed, scores, np.iinfo(np.int64).max).argmin())

    def forced_token(self, remaining: int) -> int | None:
        """The closing id to emit now if ``remaining`` tokens are just enough to end the output, else None."""
        if remaining > PLAN_HORIZON:
            return None
        if self._plan is None:
            self._since_plan += 1
            far = self._planned_len is not None and remaining > self._planned_len + PLAN_SLACK
            if far and self._since_plan < PLAN_HORIZON // 4:
                return None
            self._plan, self._plan_ends = self._closing_path()
            self._planned_len = len(self._plan) if self._plan_ends else PLAN_HORIZON
            self._since_plan = 0
        if not self._plan:
            return None
        if self._plan_ends and len(self._plan) + FORCE_MARGIN < remaining:
            return None
        return self._plan[0]  # just enough tokens left, or too few: close as far as possible

    def _closing_path(self) -> tuple[list[int], bool]:
        """The closing choices from here, up to PLAN_HORIZON ids, and whether they end the output."""
        probe = self.matcher.deep_copy()
        row = np.empty((self.compiler.vocab_size + 31) // 32, dtype=np.int32)
        path: list[int] = []
        while len(path) < PLAN_HORIZON:
            token = self._closing_choice(probe, row)
            path.append(token)
            probe.consume_token(token)
            if token in self.compiler.stop_token_ids or probe.is_stopped():
                return path, True
        return path, False


def grammar_mask(states: Sequence[GrammarState], vocab_size: int) -> torch.Tensor:
    """Allowed ids of each state as bool ``[len(states), vocab_size]`` (CPU)."""
    bitmask = np.full((len(states), (vocab_size + 31) // 32), -1, dtype=np.int32)
    for i, state in enumerate(states):
        state.fill(bitmask[i])
    return torch.from_numpy(unpack_bitmask(bitmask, vocab_size))
