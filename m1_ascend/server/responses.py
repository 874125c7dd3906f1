"""OpenAI response bodies and stream chunks: choices, logprobs in both endpoints' shapes, tool calls, usage.

Chat and completions differ only here (``ChatFormat`` / ``CompletionFormat``). A request has one or
more choices (``n``, and batched prompts on ``/v1/completions``, indexed prompt-major); each streamed
choice keeps a ``ChoiceCursor`` of what it has already sent, so every chunk carries only the new text,
log-probabilities and tool calls.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from ..engine.outputs import RequestOutput, TokenLogprob
from .protocol import NamedToolChoice, Tool
from .tools import CALL_CLOSE, CALL_OPEN, could_become_call, new_call_id, parse_tool_calls


class TokenTexts:
    """Each id's text and UTF-8 bytes as logprobs report them (special ids as their own names)."""

    def __init__(self, tokenizer: Any, vocab_size: int) -> None:
        self._tokenizer = tokenizer
        self._table = tokenizer.token_bytes(vocab_size) if tokenizer is not None else [None] * vocab_size

    def raw(self, token_id: int) -> bytes:
        raw = self._table[token_id] if 0 <= token_id < len(self._table) else None
        if raw is None:
            text = self._tokenizer.decode([token_id], skip_special_tokens=False) if self._tokenizer else ""
            return text.encode("utf-8")
        return raw

    def text(self, token_id: int) -> str:
        return self.raw(token_id).decode("utf-8", errors="replace")


def usage(prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> dict[str, Any]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": cached_tokens}}


@dataclass
class ChoiceCursor:
    """What one streamed choice has sent so far."""

    text: int = 0
    logprobs: int = 0
    calls: int = 0
    mode: str | None = None  # chat with tools: "content" or "calls" once known
    echoed: bool = False


class ResponseFormat:
    object_name: str
    chunk_object_name: str
    id_prefix: str

    def __init__(self, request_id: str, model: str, texts: TokenTexts) -> None:
        self.id = f"{self.id_prefix}-{request_id}"
        self.model = model
        self.created = int(time.time())
        self.texts = texts

    def envelope(self, object_name: str, choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {"id": self.id, "object": object_name, "created": self.created, "model": self.model, "choices": choices}

    def response(self, outputs: list[RequestOutput], usage_: dict[str, Any]) -> dict[str, Any]:
        return self.envelope(self.object_name, [self.full_choice(i, o) for i, o in enumerate(outputs)]) | {"usage": usage_}

    def usage_chunk(self, usage_: dict[str, Any]) -> dict[str, Any]:
        """The extra last chunk of ``stream_options.include_usage``: no choices, just usage."""
        return self.envelope(self.chunk_object_name, []) | {"usage": usage_}

    def opening_chunks(self, index: int) -> list[dict[str, Any]]:
        return []

    def full_choice(self, index: int, output: RequestOutput) -> dict[str, Any]:
        raise NotImplementedError

    def delta_chunks(self, index: int, output: RequestOutput, cursor: ChoiceCursor) -> list[dict[str, Any]]:
        raise NotImplementedError

    def _chunk(self, choice: dict[str, Any]) -> dict[str, Any]:
        return self.envelope(self.chunk_object_name, [choice])


class ChatFormat(ResponseFormat):
    object_name = "chat.completion"
    chunk_object_name = "chat.completion.chunk"
    id_prefix = "chatcmpl"

    def __init__(self, request_id: str, model: str, texts: TokenTexts, logprobs: bool = False,
                 tools: list[Tool] | None = None, tool_choice: str | NamedToolChoice = "none") -> None:
        super().__init__(request_id, model, texts)
        self.logprobs = logprobs
        self.tools = tools if tools and tool_choice != "none" else None
        self.calls_forced = self.tools is not None and tool_choice != "auto"

    def _entry(self, token_id: int, logprob: float) -> dict[str, Any]:
        raw = self.texts.raw(token_id)
        return {"token": raw.decode("utf-8", errors="replace"), "logprob": logprob, "bytes": list(raw)}

    def _logprobs(self, entries: list[TokenLogprob]) -> dict[str, Any]:
        return {"content": [self._entry(e.token_id, e.logprob)
                            | {"top_logprobs": [self._entry(t, v) for t, v in e.top]} for e in entries],
                "refusal": None}

    def _split(self, output: RequestOutput) -> tuple[str | None, list[Any]]:
        if self.tools is None:
            return output.text, []
        return parse_tool_calls(output.text, self.tools)

    @staticmethod
    def _finish(output: RequestOutput, calls: list[Any]) -> str | None:
        return "tool_calls" if calls and output.finish_reason == "stop" else output.finish_reason

    def full_choice(self, index: int, output: RequestOutput) -> dict[str, Any]:
        content, calls = self._split(output)
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if calls:
            message["tool_calls"] = [{"id": new_call_id(), "type": "function",
                                      "function": {"name": c.name, "arguments": c.arguments}} for c in calls]
        logprobs = self._logprobs(output.logprobs or []) if self.logprobs else None
        return {"index": index, "message": message, "logprobs": logprobs, "finish_reason": self._finish(output, calls)}

    def opening_chunks(self, index: int) -> list[dict[str, Any]]:
        return [self._chunk({"index": index, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                             "finish_reason": None})]

    def delta_chunks(self, index: int, output: RequestOutput, cursor: ChoiceCursor) -> list[dict[str, Any]]:
        new_lp = (output.logprobs or [])[cursor.logprobs:]
        cursor.logprobs += len(new_lp)
        logprobs = self._logprobs(new_lp) if self.logprobs and new_lp else None
        delta: dict[str, Any] = {}
        if self.tools is not None and cursor.mode is None:
            if self.calls_forced or output.text.lstrip().startswith(CALL_OPEN):
                cursor.mode = "calls"
            elif output.finished or not could_become_call(output.text):
                cursor.mode = "content"
        if cursor.mode == "calls":
            delta = self._call_delta(output, cursor)
        elif cursor.mode == "content" or self.tools is None:
            if len(output.text) > cursor.text:
                delta = {"content": output.text[cursor.text:]}
                cursor.text = len(output.text)
        finish = None
        if output.finished:
            _, calls = self._split(output)
            finish = self._finish(output, calls)
        if not delta and logprobs is None and finish is None:
            return []
        return [self._chunk({"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish})]

    def _call_delta(self, output: RequestOutput, cursor: ChoiceCursor) -> dict[str, Any]:
        """Each call once its block is complete (id, name and the whole arguments in one delta)."""
        assert self.tools is not None
        complete = output.text[:output.text.rfind(CALL_CLOSE) + len(CALL_CLOSE)] if CALL_CLOSE in output.text else ""
        content, calls = parse_tool_calls(complete, self.tools)
        if output.finished and not calls and cursor.calls == 0:  # never became well-formed calls: send it as text
            delta = {"content": output.text[cursor.text:]} if len(output.text) > cursor.text else {}
            cursor.text = len(output.text)
            return delta
        new = calls[cursor.calls:]
        if not new:
            return {}
        cursor.calls = len(calls)
        return {"tool_calls": [{"index": cursor.calls - len(new) + k, "id": new_call_id(), "type": "function",
                                "function": {"name": c.name, "arguments": c.arguments}} for k, c in enumerate(new)]}


class CompletionFormat(ResponseFormat):
    object_name = "text_completion"
    chunk_object_name = "text_completion"
    id_prefix = "cmpl"

    def __init__(self, request_id: str, model: str, texts: TokenTexts, logprobs: int | None = None,
                 echo: bool = False, prompt_texts: list[str] | None = None) -> None:
        super().__init__(request_id, model, texts)
        self.logprobs = logprobs
        self.echo = echo
        self.prompt_texts = prompt_texts or []

    def _logprobs(self, entries: list[TokenLogprob | None], ids: list[int], offset: int) -> dict[str, Any]:
        tokens = [self.texts.text(t) for t in ids]
        offsets = []
        for token in tokens:
            offsets.append(offset)
            offset += len(token)
        return {"tokens": tokens, "token_logprobs": [None if e is None else e.logprob for e in entries],
                "top_logprobs": [None if e is None else {self.texts.text(t): v for t, v in e.top} for e in entries],
                "text_offset": offsets}

    def _prompt_part(self, index: int, output: RequestOutput) -> tuple[str, dict[str, Any] | None]:
        prompt_text = self.prompt_texts[index] if self.echo else ""
        if not self.echo or self.logprobs is None:
            return prompt_text, None
        return prompt_text, self._logprobs(list(output.prompt_logprobs or []), output.prompt_token_ids, 0)

    def full_choice(self, index: int, output: RequestOutput) -> dict[str, Any]:
        prompt_text, prompt_lp = self._prompt_part(index, output)
        logprobs = None
        if self.logprobs is not None:
            logprobs = self._logprobs(list(output.logprobs or []), output.token_ids, len(prompt_text))
            if prompt_lp is not None:
                logprobs = {key: prompt_lp[key] + logprobs[key] for key in logprobs}
        return {"index": index, "text": prompt_text + output.text, "logprobs": logprobs,
                "finish_reason": output.finish_reason}

    def delta_chunks(self, index: int, output: RequestOutput, cursor: ChoiceCursor) -> list[dict[str, Any]]:
        chunks = []
        if not cursor.echoed:
            cursor.echoed = True
            prompt_text, prompt_lp = self._prompt_part(index, output)
            if prompt_text:
                chunks.append(self._chunk({"index": index, "text": prompt_text, "logprobs": prompt_lp,
                                           "finish_reason": None}))
        new_ids = output.token_ids[cursor.logprobs:]
        logprobs = None
        if self.logprobs is not None and new_ids:
            offset = (len(self.prompt_texts[index]) if self.echo else 0) + cursor.text
            logprobs = self._logprobs(list((output.logprobs or [])[cursor.logprobs:]), new_ids, offset)
        cursor.logprobs = len(output.token_ids)
        text = output.text[cursor.text:]
        cursor.text = len(output.text)
        if text or logprobs is not None or output.finished:
            chunks.append(self._chunk({"index": index, "text": text, "logprobs": logprobs,
                                       "finish_reason": output.finish_reason}))
        return chunks
