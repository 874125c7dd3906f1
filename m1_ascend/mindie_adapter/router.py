"""``BaichuanM1Router``: MindIE's entry point for ``model_type`` ``baichuan_m1``.

``BaseRouter`` already finds ``BaichuanM1Config`` and ``BaichuanM1ForCausalLM`` by MindIE's naming
rule (``config_baichuan_m1.py`` / ``baichuan_m1.py`` in the installed folder); the router swaps in
the Baichuan-M1 chat builder and MindIE's text tokenizer: the transformers tokenizer class of this
package, so no code shipped with the checkpoint runs (MindIE's ``trustRemoteCode`` may stay false).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mindie_llm.runtime.models.base.router import BaseRouter

from ..tokenizer import M1Tokenizer
from .input_builder import BaichuanM1InputBuilder


@dataclass
class BaichuanM1Router(BaseRouter):
    def _get_tokenizer(self) -> Any:
        from ..tokenization_baichuan_m1 import BaichuanM1Tokenizer

        return BaichuanM1Tokenizer.from_pretrained(self.load_config.tokenizer_path, padding_side="left",
                                                   truncation_side="left")

    def _get_input_builder(self) -> BaichuanM1InputBuilder:
        kwargs: dict[str, Any] = {}
        if self.custom_chat_template:
            kwargs["chat_template"] = self.custom_chat_template
        if getattr(self.config, "max_position_embeddings", None):
            kwargs["max_length"] = self.config.max_position_embeddings
        tokenizer_dir = self.load_config.tokenizer_path or self.load_config.model_name_or_path
        return BaichuanM1InputBuilder(self.tokenizer, M1Tokenizer.from_pretrained(tokenizer_dir), **kwargs)
