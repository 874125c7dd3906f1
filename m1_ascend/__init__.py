"""m1-ascend: Baichuan-M1 on Ascend NPUs, with an exact CPU reference path.

Importing the package registers ``baichuan_m1`` with transformers' Auto classes, so
``AutoModelForCausalLM.from_pretrained(dir)`` works without ``trust_remote_code``.
"""

from typing import Any

from transformers import AutoConfig, AutoModelForCausalLM

from .config import BaichuanM1Config, preset_config
from .modeling import BaichuanM1ForCausalLM

__version__ = "0.1.0"

AutoConfig.register(BaichuanM1Config.model_type, BaichuanM1Config, exist_ok=True)
AutoModelForCausalLM.register(BaichuanM1Config, BaichuanM1ForCausalLM, exist_ok=True)

__all__ = ["LLM", "BaichuanM1Config", "BaichuanM1ForCausalLM", "SamplingParams", "__version__", "preset_config"]


def __getattr__(name: str) -> Any:
    """``LLM`` and ``SamplingParams`` load the engine on first use, keeping ``import m1_ascend`` light."""
    if name in ("LLM", "SamplingParams"):
        from . import engine

        return getattr(engine, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
