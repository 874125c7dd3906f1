"""``BaichuanM1InputBuilder``: MindIE's chat input built with Baichuan-M1's own turn tokens.

MindIE's default builder calls ``tokenizer.apply_chat_template``, which depends on whatever template
the checkpoint's tokenizer files carry. This one renders the layout our engine uses
(``<B_SYS>system``, ``<C_Q>user``, ``<C_A>assistant``, generation prompt ``<C_A>``) through
``M1Tokenizer``, so MindIE and ``m1-ascend serve`` feed the model identical ids. A ``chat_template``
set in MindIE's config still takes precedence, as it does for every MindIE model.
"""

from __future__ import annotations

from typing import Any

from mindie_llm.runtime.models.base.input_builder import InputBuilder

from ..tokenizer import M1Tokenizer


class BaichuanM1InputBuilder(InputBuilder):
    def __init__(self, tokenizer: Any, chat_tokenizer: M1Tokenizer, **kwargs: Any) -> None:
        super().__init__(tokenizer, **kwargs)
        self.chat_tokenizer = chat_tokenizer
        self.has_custom_template = bool(kwargs.get("chat_template"))

    def _apply_chat_template(self, conversation: list[dict[str, str]], **kwargs: Any) -> list[int]:
        if self.has_custom_template:
            return super()._apply_chat_template(conversation, **kwargs)
        if kwargs.get("tools_msg"):
            raise ValueError("Baichuan-M1 has no tool-calling format; send the request without tools")
        add_generation_prompt = kwargs.get("add_generation_prompt", True)
        return self.chat_tokenizer.apply_chat_template(conversation, add_generation_prompt=add_generation_prompt)
