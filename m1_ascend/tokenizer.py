"""Baichuan-M1 tokenizer and chat format (architecture.md §5), without ``trust_remote_code``.

The vocabulary is the checkpoint's SentencePiece ``tokenizer.model``. Everything the public
sources leave open — role-token ids, eos/stop ids, the chat template — is read from
``tokenizer_config.json`` / ``generation_config.json``; the documented defaults (role tokens
71..76, the §5 layout) only apply when the checkpoint says nothing.

Role tokens are single ids that only the chat template can emit: text given to ``encode`` (and
every message's content) is tokenized as ordinary pieces, so a user typing ``<C_A>`` cannot
forge an assistant turn.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import sentencepiece as spm
from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

logger = logging.getLogger(__name__)

TOKENIZER_FILE = "tokenizer.model"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
GENERATION_CONFIG_FILE = "generation_config.json"

ROLE_TOKENS = ("<B_SYS>", "<B_USYS>", "<C_Q>", "<C_A>", "<B_FUNC>", "<B_CODE>")
# chatllm.cpp's defaults for the real tokenizer (architecture.md §5); used only when the
# checkpoint's tokenizer files do not name these tokens.
DEFAULT_ROLE_TOKEN_IDS = dict(zip(ROLE_TOKENS, range(71, 77), strict=True))
CHAT_ROLES = ("system", "user", "assistant")

# The §5 layout: no BOS, no separators, ``<B_SYS>system<C_Q>user<C_A>answer...<C_A>``.
DEFAULT_CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'system' -%}<B_SYS>"
    "{%- elif message['role'] == 'user' -%}<C_Q>"
    "{%- else -%}<C_A>"
    "{%- endif -%}"
    "{{ message['content'] }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}<C_A>{%- endif -%}"
)


def _read_json(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return data


def _token_text(value: Any) -> str | None:
    """``eos_token`` and friends are a string or an AddedToken dict with ``content``."""
    if isinstance(value, Mapping):
        value = value.get("content")
    return value if isinstance(value, str) else None


def _pick_template(value: Any) -> str | None:
    """``chat_template`` is a string or a list of named templates (use ``default``)."""
    if isinstance(value, list):
        named = {t.get("name"): t.get("template") for t in value if isinstance(t, Mapping)}
        value = named.get("default")
    return value if isinstance(value, str) else None


def validate_messages(messages: Any) -> list[dict[str, str]]:
    """Check a chat before rendering; the error names the message and the problem."""
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence) or len(messages) == 0:
        raise ValueError("messages must be a non-empty list of {'role', 'content'} dicts")
    checked = []
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise ValueError(f"message {i} must be a dict with 'role' and 'content', got {type(message).__name__}")
        role = message.get("role")
        if role not in CHAT_ROLES:
            raise ValueError(f"message {i}: unknown role {role!r}; expected one of {', '.join(CHAT_ROLES)}")
        if role == "system" and i != 0:
            raise ValueError(f"message {i}: a system message is only allowed as the first message")
        content = message.get("content")
        if not isinstance(content, str):
            raise ValueError(f"message {i} ({role}): content must be a string, got {type(content).__name__}")
        checked.append({"role": role, "content": content})
    return checked


class M1Tokenizer:
    """SentencePiece vocabulary plus the checkpoint's special tokens and chat template."""

    def __init__(
        self,
        processor: spm.SentencePieceProcessor,
        added_tokens: Mapping[int, str] | None = None,
        eos_token_ids: Sequence[int] | None = None,
        chat_template: str | None = None,
    ) -> None:
        self._sp = processor
        self._piece_count = processor.get_piece_size()
        # Special tokens: the SentencePiece control pieces (bos/eos/reserved...), the checkpoint's
        # added tokens, and the role tokens at their defaults where nothing else places them.
        specials: dict[int, str] = {
            i: processor.id_to_piece(i) for i in range(self._piece_count) if processor.is_control(i)
        }
        specials.update(added_tokens or {})
        by_text = {text: i for i, text in specials.items()}
        for token, default_id in DEFAULT_ROLE_TOKEN_IDS.items():
            if token not in by_text:
                token_id = processor.piece_to_id(token)
                if token_id == processor.unk_id():
                    logger.warning("tokenizer files do not place %s; assuming the default id %d", token, default_id)
                    token_id = default_id
                specials[token_id] = token
                by_text[token] = token_id
        self._specials = specials
        self._token_bytes: dict[int, tuple[bytes | None, ...]] = {}
        self._special_ids = by_text
        self.role_token_ids: dict[str, int] = {token: by_text[token] for token in ROLE_TOKENS}
        self._special_pattern = re.compile("|".join(re.escape(t) for t in sorted(by_text, key=len, reverse=True)))

        if not eos_token_ids:
            eos_token_ids = [processor.eos_id()] if processor.eos_id() >= 0 else []
        if not eos_token_ids:
            raise ValueError("the tokenizer defines no eos token; set eos_token_id in generation_config.json")
        self.eos_token_ids = list(dict.fromkeys(int(i) for i in eos_token_ids))
        self.eos_token_id = self.eos_token_ids[0]
        # A reply ends at eos or where the model starts a new user or assistant turn.
        turn_ids = [self.role_token_ids["<C_Q>"], self.role_token_ids["<C_A>"]]
        self.stop_token_ids: list[int] = list(dict.fromkeys(self.eos_token_ids + turn_ids))

        self.chat_template = chat_template or DEFAULT_CHAT_TEMPLATE
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = self._raise_from_template
        try:
            self._template = env.from_string(self.chat_template)
        except TemplateError as exc:
            raise ValueError(f"chat_template does not compile: {exc}") from None
        self._template_vars = {
            "bos_token": processor.id_to_piece(processor.bos_id()) if processor.bos_id() >= 0 else "",
            "eos_token": specials.get(self.eos_token_id, ""),
        }

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> M1Tokenizer:
        """Load ``tokenizer.model`` and the special-token / template / eos settings beside it."""
        directory = Path(directory)
        model_path = directory / TOKENIZER_FILE
        if not model_path.exists():
            raise FileNotFoundError(f"{directory}: no {TOKENIZER_FILE} (SentencePiece model) found")
        processor = spm.SentencePieceProcessor()
        try:
            processor.load(str(model_path))
        except (OSError, RuntimeError) as exc:
            raise ValueError(f"{model_path}: not a SentencePiece model ({exc})") from None
        tok_config = _read_json(directory / TOKENIZER_CONFIG_FILE)
        gen_config = _read_json(directory / GENERATION_CONFIG_FILE)

        added = {}
        for key, entry in (tok_config.get("added_tokens_decoder") or {}).items():
            text = _token_text(entry)
            if text is not None:
                added[int(key)] = text

        eos = gen_config.get("eos_token_id")
        eos_ids = [eos] if isinstance(eos, int) else list(eos or [])
        eos_text = _token_text(tok_config.get("eos_token"))
        if not eos_ids and eos_text is not None:
            by_text = {text: i for i, text in added.items()}
            piece_id = by_text.get(eos_text, processor.piece_to_id(eos_text))
            if piece_id != processor.unk_id():
                eos_ids = [piece_id]
        return cls(processor, added, eos_ids, _pick_template(tok_config.get("chat_template")))

    @property
    def vocab_size(self) -> int:
        return max(self._piece_count, max(self._specials, default=-1) + 1)

    @property
    def special_token_ids(self) -> frozenset[int]:
        return frozenset(self._specials)

    def encode(self, text: str) -> list[int]:
        """Ordinary pieces only (no BOS): special-token strings in ``text`` stay plain text."""
        ids: list[int] = []
        for token_id in self._sp.encode(text):
            if token_id in self._specials:  # a user-defined piece that spells a special token
                ids += self._literal_ids(self._specials[token_id])
            else:
                ids.append(token_id)
        return ids

    def _literal_ids(self, text: str) -> list[int]:
        """Spell ``text`` character by character, through byte pieces where a character has none."""
        ids = []
        for char in text:
            piece_id = self._sp.piece_to_id(char)
            if piece_id != self._sp.unk_id() and piece_id not in self._specials:
                ids.append(piece_id)
                continue
            byte_ids = [self._sp.piece_to_id(f"<0x{b:02X}>") for b in char.encode("utf-8")]
            ids += byte_ids if self._sp.unk_id() not in byte_ids else [self._sp.unk_id()]
        return ids

    def token_bytes(self, vocab_size: int) -> tuple[bytes | None, ...]:
        """The UTF-8 bytes each id adds to decoded text; None for special ids and ids beyond the pieces.

        Grammar masks are built from this (structured output), so they follow the real vocabulary:
        ``▁`` is a space and byte-fallback pieces ``<0xNN>`` are that one byte. Built once per
        ``vocab_size`` (a 133k vocabulary takes about 0.2 s) and shared by every caller.
        """
        if vocab_size not in self._token_bytes:
            self._token_bytes[vocab_size] = self._build_token_bytes(vocab_size)
        return self._token_bytes[vocab_size]

    def _build_token_bytes(self, vocab_size: int) -> tuple[bytes | None, ...]:
        sp = self._sp
        table: list[bytes | None] = []
        for token_id in range(vocab_size):
            if token_id >= self._piece_count or token_id in self._specials or sp.is_unknown(token_id):
                table.append(None)
            elif sp.is_byte(token_id):
                table.append(bytes([int(sp.id_to_piece(token_id)[3:5], 16)]))
            else:
                table.append(sp.id_to_piece(token_id).replace("\u2581", " ").encode("utf-8"))
        return tuple(table)

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        """Text of ``ids``; ids outside the vocabulary (a model may be wider) are dropped."""
        parts: list[str] = []
        run: list[int] = []
        for token_id in map(int, ids):
            if token_id in self._specials:
                if not skip_special_tokens:
                    parts.append(self._sp.decode(run))
                    run = []
                    parts.append(self._specials[token_id])
            elif 0 <= token_id < self._piece_count:
                run.append(token_id)
        parts.append(self._sp.decode(run))
        return "".join(parts)

    def render_chat(self, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = True) -> str:
        """The chat as the template's text, e.g. ``<B_SYS>sys<C_Q>question<C_A>``."""
        return self._render(validate_messages(messages), add_generation_prompt)

    def apply_chat_template(self, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = True) -> list[int]:
        """Token ids of the rendered chat: role tokens from the template, contents as plain text.

        The template is rendered with a placeholder per message, so only the template's own text
        can produce special tokens; the contents are encoded separately as ordinary pieces.
        """
        checked = validate_messages(messages)
        marker = uuid.uuid4().hex
        placeholders = [f"\x00{marker}:{i}\x00" for i in range(len(checked))]
        masked = [{"role": m["role"], "content": p} for m, p in zip(checked, placeholders, strict=True)]
        skeleton = self._render(masked, add_generation_prompt)
        pieces = re.split(f"\x00{marker}:(\\d+)\x00", skeleton)
        # re.split alternates template text and captured message indices.
        rebuilt = "".join(checked[int(p)]["content"] if i % 2 else p for i, p in enumerate(pieces))
        rendered = self._render(checked, add_generation_prompt)
        if rebuilt != rendered:
            logger.warning("chat_template rewrites message contents; special tokens in messages are not escaped")
            return self._encode_template_text(rendered)
        ids: list[int] = []
        for i, piece in enumerate(pieces):
            ids += self.encode(checked[int(piece)]["content"]) if i % 2 else self._encode_template_text(piece)
        return ids

    def _encode_template_text(self, text: str) -> list[int]:
        """Template text: special-token strings become their ids, the rest ordinary pieces."""
        ids: list[int] = []
        start = 0
        for match in self._special_pattern.finditer(text):
            ids += self.encode(text[start:match.start()]) if match.start() > start else []
            ids.append(self._special_ids[match.group()])
            start = match.end()
        if start < len(text):
            ids += self.encode(text[start:])
        return ids

    def _render(self, messages: list[dict[str, str]], add_generation_prompt: bool) -> str:
        try:
            return self._template.render(messages=messages, add_generation_prompt=add_generation_prompt,
                                         **self._template_vars)
        except TemplateError as exc:
            raise ValueError(f"chat_template failed: {exc}") from None

    @staticmethod
    def _raise_from_template(message: str) -> None:
        raise ValueError(message)
