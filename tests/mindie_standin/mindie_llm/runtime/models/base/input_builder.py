"""Stand-in for ``mindie_llm.runtime.models.base.input_builder`` (MindIE-LLM 8b4871a, models/base/input_builder.py).

``make_context`` (:110-209): a trailing ``tools_call`` message is popped and passed on as
``tools_msg``; assistant tool-call messages with ``content=None`` get ``""``; the ids come from
``_apply_chat_template`` (the tokenizer's chat template unless a subclass overrides it); finally
the ids are decoded with ``self.tokenizer`` for a debug log line -- evaluated even when debug
logging is off, so ``make_context`` needs a tokenizer (``load_tokenizer`` on). Per-request chat
templates and the ``adapt_to_max_length`` multi-turn truncation are not modelled.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum
from typing import Any

import numpy as np
from mindie_llm.utils.log.logging import logger, print_log


class TruncationSide(int, Enum):
    DISABLE = 0
    LEFT = 1
    RIGHT = -1


class InputBuilder:
    def __init__(self, tokenizer: Any, chat_template: str = "", system_role_name: str = "system",
                 user_role_name: str = "user", max_length: int = 2048) -> None:
        self.tokenizer = tokenizer
        self.system_role_name = system_role_name
        self.user_role_name = user_role_name
        self.tool_calls_name = "tools_call"
        self.role_key = "role"
        self.truncation = "truncation"
        if chat_template:
            self.tokenizer.chat_template = chat_template
        self.max_length = max_length
        self.rank = 0

    @staticmethod
    def generate_position_ids(input_ids: np.ndarray) -> Iterable[int]:
        """Positions 0..n-1 of one sequence's prompt (models with other position schemes override this)."""
        return range(len(input_ids))

    @staticmethod
    def update_chat_template(**kwargs: Any) -> None:
        if (kwargs.get("chat_template_kwargs") or {}).get("chat_template") is not None:
            raise NotImplementedError("not modelled: per-request chat templates")

    def make_context(self, rank: int, conversation: list[dict[str, Any]], add_generation_prompt: bool = True,
                     adapt_to_max_length: bool = False, **kwargs: Any) -> list[int]:
        self.rank = rank
        tools_msg: dict[str, Any] = {}
        if conversation and conversation[-1].get(self.role_key) == self.tool_calls_name:
            tools_msg = conversation.pop()
        _preprocess_messages(conversation)
        InputBuilder.update_chat_template(**kwargs)
        if adapt_to_max_length:
            return self._make_multi_turns_context(conversation, [], [], [], **kwargs)
        if tools_msg:
            kwargs["tools_msg"] = tools_msg
        context_tokens = self._apply_chat_template(conversation, add_generation_prompt=add_generation_prompt, **kwargs)
        print_log(rank, logger.debug, f"input_texts: {self.tokenizer.decode(context_tokens)}")
        return context_tokens

    def _apply_chat_template(self, conversation: list[dict[str, Any]], **kwargs: Any) -> list[int]:
        """The tokenizer's chat template, tokenized; right truncation unless ``truncation=TruncationSide.LEFT``."""
        if not self.tokenizer.chat_template:
            raise RuntimeError("The model does not appear to be a chat model because it is not configured with a "
                               "`chat_template`.")
        side = kwargs.pop(self.truncation, TruncationSide.RIGHT)
        max_length = None
        if side in (TruncationSide.RIGHT, TruncationSide.LEFT):
            kwargs[self.truncation] = side == TruncationSide.RIGHT
            kwargs["tokenize"] = True
        if side == TruncationSide.LEFT:
            max_length = kwargs.pop("max_length", None)
        input_ids = self.tokenizer.apply_chat_template(conversation, **kwargs)
        if max_length is not None and len(input_ids) > max_length:
            input_ids = input_ids[-max_length:]
        return input_ids

    def _make_multi_turns_context(self, conversation: list[dict[str, Any]], system_turn: list[dict[str, Any]],
                                  query_turn: list[dict[str, Any]], last_turn_tokens: list[int], **kwargs: Any) -> list[int]:
        raise NotImplementedError("not modelled: adapt_to_max_length (dropping the oldest turns)")


def _preprocess_messages(conversation: list[dict[str, Any]]) -> None:
    """Assistant messages with tool calls and ``content=None`` get ``content=""``."""
    for message in conversation:
        if (message.get("role", "user") == "assistant" and message.get("tool_calls") is not None
                and message.get("content") is None):
            message["content"] = ""
