"""Stand-in for ``mindie_llm.runtime.models.base.input_builder`` (no truncation or tool messages)."""

from __future__ import annotations

from typing import Any


class InputBuilder:
    def __init__(self, tokenizer: Any, chat_template: str = "", system_role_name: str = "system",
                 user_role_name: str = "user", max_length: int = 2048) -> None:
        self.tokenizer = tokenizer
        self.system_role_name = system_role_name
        self.user_role_name = user_role_name
        self.tool_calls_name = "tools_call"
        self.role_key = "role"
        if chat_template:
            self.tokenizer.chat_template = chat_template
        self.max_length = max_length
        self.rank = 0

    @staticmethod
    def generate_position_ids(input_ids):
        return range(len(input_ids))

    def make_context(self, rank: int, conversation: list[dict[str, str]], add_generation_prompt: bool = True,
                     adapt_to_max_length: bool = False, **kwargs) -> list[int]:
        self.rank = rank
        return self._apply_chat_template(conversation, add_generation_prompt=add_generation_prompt, **kwargs)

    def _apply_chat_template(self, conversation: list[dict[str, str]], **kwargs) -> list[int]:
        return self.tokenizer.apply_chat_template(conversation, **kwargs)
