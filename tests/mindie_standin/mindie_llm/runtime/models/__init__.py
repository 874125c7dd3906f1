"""Stand-in for ``mindie_llm.runtime.models``: MindIE's model discovery rule, unchanged.

A model is a folder named after the lower-cased ``model_type`` (not ``base``, not starting with
``_``); its ``router_<type>`` module defines ``<PascalCaseType>Router``, built as
``Router(config_dict, load_config)``.
"""

import importlib
import json
import os

from mindie_llm.runtime.config.load_config import LoadConfig


def get_router_ins(load_config: LoadConfig):
    model_name_or_path = load_config.model_name_or_path
    with open(os.path.join(model_name_or_path, "config.json"), encoding="utf-8") as f:
        config_dict = json.load(f)
    config_dict["model_type"] = config_dict["model_type"].lower()
    model_type = config_dict["model_type"]

    current_path = os.path.dirname(os.path.abspath(__file__))
    supported_models = [name for name in os.listdir(current_path)
                        if os.path.isdir(os.path.join(current_path, name)) and name != "base" and not name.startswith("_")]
    if model_type not in supported_models:
        raise NotImplementedError(f"unsupported model type: {model_type};Please check if a folder named {model_type} "
                                  "exists in the mindie_llm.runtime.models directory.")
    router = importlib.import_module(f"mindie_llm.runtime.models.{model_type}.router_{model_type}")
    router_cls = getattr(router, "".join(part.capitalize() for part in model_type.split("_")) + "Router")
    return router_cls(config_dict, load_config)
