"""Stand-in for ``mindie_llm.runtime.models`` (MindIE-LLM 8b4871a, runtime/models/__init__.py:20-60): model discovery.

The ``model_type`` of the checkpoint's ``config.json`` (lower-cased) must be a folder next to this
file (not ``base``, not starting with ``_``); MindIE imports
``mindie_llm.runtime.models.<type>.router_<type>`` and instantiates ``<PascalType>Router(config_dict,
load_config)``. MindIE's permission checks on the model path are not modelled.
"""

from __future__ import annotations

import importlib
import json
import os
from typing import Any

from mindie_llm.runtime.config.load_config import LoadConfig


def get_router_ins(load_config: LoadConfig) -> Any:
    model_name_or_path = load_config.model_name_or_path
    with open(os.path.join(model_name_or_path, "config.json"), encoding="utf-8") as f:
        config_dict = json.load(f)
    config_dict["model_type"] = config_dict["model_type"].lower()
    model_type = config_dict["model_type"]
    here = os.path.dirname(os.path.abspath(__file__))
    supported_models = [name for name in sorted(os.listdir(here))
                        if os.path.isdir(os.path.join(here, name)) and name != "base" and not name.startswith("_")]
    if model_type not in supported_models:
        raise NotImplementedError(f"unsupported model type: {model_type};Please check if a folder named {model_type} "
                                  "exists in the mindie_llm.runtime.models directory.")
    router = importlib.import_module(f"mindie_llm.runtime.models.{model_type}.router_{model_type}")
    router_cls = getattr(router, "".join(part.capitalize() for part in model_type.split("_")) + "Router")
    return router_cls(config_dict, load_config)
