"""Stand-in for ``mindie_llm.runtime.models.base.router`` (MindIE-LLM 8b4871a, models/base/router.py).

A model's router is a dataclass ``(config_dict, load_config)`` whose cached properties the runner
reads: ``config`` (``config_dict`` updated with ``generation_config.json``, then
``<Type>Config.from_dict``; :91-107), ``generation_config`` (validated against ``vocab_size``),
``tokenizer`` (only with ``load_tokenizer``: ``AutoTokenizer`` from ``tokenizer_path`` with
left padding/truncation, ``use_fast=True``; :144-154, :305-319), ``input_builder``
(``InputBuilder(tokenizer, max_length=config.max_position_embeddings)``, plus the llm_config's
chat template file when set), ``model_cls`` (``<type>.<Type>ForCausalLM``), ``draft_cls``
(``<type>_mtp.<Type>MTP``), and ``llm_config`` (``runtime/conf/config.json`` or ``llm_config_path``,
overlaid with the service's ``models`` dict and the model's own section; :387-412).
Tool-call processors and reasoning parsers are not modelled; MindIE's safety wrappers around file
reads and the tokenizer are reduced to plain reads.
"""

from __future__ import annotations

import importlib
import json
import os
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from mindie_llm.runtime.config.configuration_utils import LLMConfig
from mindie_llm.runtime.config.huggingface_config import GenerationConfig
from mindie_llm.runtime.config.load_config import LoadConfig
from mindie_llm.runtime.models.base.input_builder import InputBuilder
from mindie_llm.utils.log.logging import logger

DEFAULT_CONFIG_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(__file__))), "conf", "config.json")


class _LLMConfigValidator:
    """Stand-in for the ``DictionaryParameterValidator`` of :66-85: the three keys and their types."""

    @staticmethod
    def validate(sections: dict[str, Any]) -> None:
        if not isinstance(sections["enable_reasoning"], bool):
            raise ValueError("enable_reasoning must be a bool")
        parser = sections["tool_call_options"]["tool_call_parser"]
        if parser is not None and (not isinstance(parser, str) or len(parser) > 1024):
            raise ValueError("tool_call_options.tool_call_parser must be a string of at most 1024 characters")
        template = sections["chat_template"]
        if template is not None and not os.path.isfile(template):
            raise ValueError(f"chat_template {template} is not a file")


@dataclass
class BaseRouter:
    config_dict: dict | None = None
    load_config: LoadConfig | None = None

    def __post_init__(self) -> None:
        self._model_type = self.config_dict["model_type"]
        self._model_type_cap = "".join(part.capitalize() for part in self._model_type.split("_"))

    @classmethod
    def get_llm_config_validators(cls) -> _LLMConfigValidator:
        return _LLMConfigValidator()

    @cached_property
    def llm_config(self) -> LLMConfig:
        return self._get_llm_config()

    @cached_property
    def config(self) -> Any:
        self.config_dict.update(self._get_generation_config_dict())
        return self._get_config_cls().from_dict(self.config_dict)

    @cached_property
    def generation_config(self) -> GenerationConfig:
        generation_config = GenerationConfig.from_dict(self._get_generation_config_dict())
        generation_config.validate(self.config.vocab_size)
        return generation_config

    @cached_property
    def input_builder(self) -> InputBuilder:
        return self._get_input_builder()

    @cached_property
    def model_cls(self) -> type:
        return self._get_model_cls()

    @cached_property
    def draft_cls(self) -> type:
        return self._get_draft_cls()

    @cached_property
    def tokenizer(self) -> Any:
        return self._get_tokenizer() if self.load_config.load_tokenizer else None

    @cached_property
    def tool_call_parser(self) -> str:
        return self._get_tool_calls_parser()

    @cached_property
    def custom_chat_template(self) -> str:
        return self._get_custom_chat_template() if getattr(self.llm_config, "chat_template", "") else ""

    @cached_property
    def tool_calls_processor(self) -> Any:
        self._get_tool_calls_options()
        return self._get_tool_calls_processor()

    @cached_property
    def reasoning_parser(self) -> Any:
        return self._get_reasoning_parser()

    def _get_tool_calls_options(self) -> None:
        raise NotImplementedError("not modelled: tool-call processors")

    def _get_config_cls(self) -> type:
        module = importlib.import_module(f"mindie_llm.runtime.models.{self._model_type}.config_{self._model_type}")
        return getattr(module, f"{self._model_type_cap}Config")

    def _get_custom_chat_template(self) -> str:
        path = self.llm_config.chat_template
        if not path or not os.path.exists(path):
            return ""
        try:
            with open(path, encoding="utf-8") as f:
                return f.read()
        except OSError as error:
            logger.warning(f"Failed to load given chat template '{path}': {error}")
            return ""

    def _get_input_builder(self) -> InputBuilder:
        kwargs: dict[str, Any] = {}
        if self.custom_chat_template:
            kwargs["chat_template"] = self.custom_chat_template
        if getattr(self.config, "max_position_embeddings", None):
            kwargs["max_length"] = self.config.max_position_embeddings
        return InputBuilder(self.tokenizer, **kwargs)

    def _get_model_cls(self) -> type:
        module = importlib.import_module(f"mindie_llm.runtime.models.{self._model_type}.{self._model_type}")
        return getattr(module, f"{self._model_type_cap}ForCausalLM")

    def _get_draft_cls(self) -> type:
        module = importlib.import_module(f"mindie_llm.runtime.models.{self._model_type}.{self._model_type}_mtp")
        return getattr(module, f"{self._model_type_cap}MTP")

    def _get_tokenizer(self) -> Any:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(self.load_config.tokenizer_path, padding_side="left", truncation_side="left",
                                             trust_remote_code=self.load_config.trust_remote_code, use_fast=True)

    def _get_reasoning_parser(self) -> Any:
        raise NotImplementedError("not modelled: reasoning parsers")

    def _get_tool_calls_parser(self) -> str:
        return self._model_type

    def _get_tool_calls_processor(self) -> Any:
        raise NotImplementedError("not modelled: tool-call processors")

    def _get_generation_config_dict(self) -> dict:
        path = os.path.join(self.load_config.model_name_or_path, "generation_config.json")
        if not os.path.exists(path):
            return {}
        with open(path, encoding="utf-8") as f:
            return json.load(f)

    def _get_llm_config(self) -> LLMConfig:
        path = self.load_config.llm_config_path if self.load_config.llm_config_path is not None else DEFAULT_CONFIG_PATH
        llm_config = LLMConfig(path)
        if isinstance(self.load_config.models_dict, str):
            try:
                self.load_config.models_dict = json.loads(self.load_config.models_dict)
            except json.JSONDecodeError as error:
                logger.warning(f"The 'models' field does not conform to JSON format. Please check., exception info: {error}")
                self.load_config.models_dict = None
        llm_config.update(self.load_config.models_dict, allow_new_keys=True)
        llm_config.merge_models_config(self._model_type)
        llm_config.check_config(self.get_llm_config_validators())
        return llm_config
