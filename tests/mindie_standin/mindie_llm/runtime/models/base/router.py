"""Stand-in for ``mindie_llm.runtime.models.base.router`` (no llm_config file, tool calls or reasoning)."""

from __future__ import annotations

import importlib
import json
import os
from dataclasses import dataclass
from functools import cached_property

from mindie_llm.runtime.config.huggingface_config import GenerationConfig
from mindie_llm.runtime.config.load_config import LoadConfig
from mindie_llm.runtime.models.base.input_builder import InputBuilder


@dataclass
class BaseRouter:
    config_dict: dict | None = None
    load_config: LoadConfig | None = None

    def __post_init__(self):
        self._model_type = self.config_dict["model_type"]
        self._model_type_cap = "".join(part.capitalize() for part in self._model_type.split("_"))

    @cached_property
    def config(self):
        self.config_dict.update(self._get_generation_config_dict())
        return self._get_config_cls().from_dict(self.config_dict)

    @cached_property
    def generation_config(self):
        generation_config = GenerationConfig.from_dict(self._get_generation_config_dict())
        generation_config.validate(self.config.vocab_size)
        return generation_config

    @cached_property
    def input_builder(self):
        return self._get_input_builder()

    @cached_property
    def model_cls(self):
        return self._get_model_cls()

    @cached_property
    def tokenizer(self):
        return self._get_tokenizer() if self.load_config.load_tokenizer else None

    @cached_property
    def custom_chat_template(self):
        return ""  # MindIE reads llm.chat_template from its llm config; the stand-in has none

    def _get_config_cls(self):
        module = importlib.import_module(f"mindie_llm.runtime.models.{self._model_type}.config_{self._model_type}")
        return getattr(module, f"{self._model_type_cap}Config")

    def _get_input_builder(self) -> InputBuilder:
        kwargs = {}
        if self.custom_chat_template:
            kwargs["chat_template"] = self.custom_chat_template
        if getattr(self.config, "max_position_embeddings", None):
            kwargs["max_length"] = self.config.max_position_embeddings
        return InputBuilder(self.tokenizer, **kwargs)

    def _get_model_cls(self):
        module = importlib.import_module(f"mindie_llm.runtime.models.{self._model_type}.{self._model_type}")
        return getattr(module, f"{self._model_type_cap}ForCausalLM")

    def _get_tokenizer(self):
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(self.load_config.tokenizer_path, padding_side="left",
                                             truncation_side="left",
                                             trust_remote_code=self.load_config.trust_remote_code, use_fast=True)

    def _get_generation_config_dict(self) -> dict:
        path = os.path.join(self.load_config.model_name_or_path, "generation_config.json")
        if not os.path.exists(path):
            return {}
        with open(path, encoding="utf-8") as f:
            return json.load(f)
