"""Read a peft LoRA adapter directory into plain per-module matrices.

Both the merge (``export``) and per-request serving (``adapters``) work from this one reading,
so a merged checkpoint and a served adapter apply the very same delta
``W' = W + scale * B @ A``. Only what both can apply exactly is accepted: plain LoRA on the
Linear layers of Baichuan-M1, without DoRA, biases, extra trained modules or per-module
rank/alpha patterns; anything else is refused with the reason instead of being half-applied.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
KEY_PREFIX = "base_model.model."


class AdapterError(ValueError):
    """The adapter cannot be applied; the message names the directory and the reason."""


@dataclass(frozen=True)
class LoRAModule:
    a: torch.Tensor  # [rank, in_features]
    b: torch.Tensor  # [out_features, rank]
    scale: float

    def delta(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """``scale * B @ A``, computed in fp32 and returned in ``dtype``."""
        return (self.b.float() @ self.a.float() * self.scale).to(dtype)


@dataclass(frozen=True)
class LoRAWeights:
    """One adapter: module name (e.g. ``model.layers.0.self_attn.W_pack``) -> its LoRA pair."""

    modules: dict[str, LoRAModule]
    config: dict[str, Any]
    source: str

    @property
    def base_model_name_or_path(self) -> str | None:
        return self.config.get("base_model_name_or_path")


def _check_config(config: dict[str, Any], where: Path) -> None:
    def refuse(condition: bool, reason: str) -> None:
        if condition:
            raise AdapterError(f"{where}: {reason}")

    refuse(config.get("peft_type") != "LORA", f"peft_type {config.get('peft_type')!r} is not LORA")
    refuse(bool(config.get("use_dora")), "DoRA adapters are not supported")
    refuse(config.get("bias", "none") != "none" or bool(config.get("lora_bias")), "adapters with trained biases "
           "are not supported")
    refuse(bool(config.get("modules_to_save")), f"modules_to_save {config['modules_to_save']} cannot be served "
           "per request")
    refuse(bool(config.get("fan_in_fan_out")), "fan_in_fan_out adapters are not for this model's Linear layers")
    refuse(bool(config.get("rank_pattern")) or bool(config.get("alpha_pattern")),
           "per-module rank_pattern/alpha_pattern are not supported")


def load_lora(adapter_dir: str | Path) -> LoRAWeights:
    """Load ``adapter_config.json`` + ``adapter_model.safetensors`` written by peft."""
    directory = Path(adapter_dir)
    config_path, weights_path = directory / ADAPTER_CONFIG, directory / ADAPTER_WEIGHTS
    if not config_path.is_file() or not weights_path.is_file():
        raise AdapterError(f"{directory}: not a LoRA adapter directory (needs {ADAPTER_CONFIG} and {ADAPTER_WEIGHTS})")
    config = json.loads(config_path.read_text(encoding="utf-8"))
    _check_config(config, directory)
    alpha, rank = float(config["lora_alpha"]), int(config["r"])
    scale = alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank
    tensors = load_file(str(weights_path))
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        if not key.startswith(KEY_PREFIX) or not key.endswith((".lora_A.weight", ".lora_B.weight")):
            raise AdapterError(f"{directory}: unexpected tensor {key!r} (only LoRA A/B weights can be applied)")
        module, kind, _ = key[len(KEY_PREFIX):].rsplit(".", 2)
        pairs.setdefault(module, {})[kind] = tensor
    modules = {}
    for name, pair in pairs.items():
        if set(pair) != {"lora_A", "lora_B"}:
            raise AdapterError(f"{directory}: {name} lacks its {'lora_B' if 'lora_A' in pair else 'lora_A'} weight")
        a, b = pair["lora_A"], pair["lora_B"]
        if a.shape[0] != b.shape[1]:
            raise AdapterError(f"{directory}: {name}: lora_A {list(a.shape)} and lora_B {list(b.shape)} ranks differ")
        modules[name] = LoRAModule(a=a, b=b, scale=scale)
    if not modules:
        raise AdapterError(f"{directory}: the adapter holds no LoRA weights")
    return LoRAWeights(modules=modules, config=config, source=str(directory))


def target_linears(model: nn.Module, lora: LoRAWeights) -> dict[str, nn.Linear]:
    """The model's Linear layer for every adapter module, after checking names and shapes."""
    named = dict(model.named_modules())
    linears = {}
    for name, module in lora.modules.items():
        layer = named.get(name)
        if not isinstance(layer, nn.Linear):
            raise AdapterError(f"{lora.source}: {name} is not a Linear layer of this model (was it trained on "
                               "another base model?)")
        expected = (layer.out_features, layer.in_features)
        if (module.b.shape[0], module.a.shape[1]) != expected:
            raise AdapterError(f"{lora.source}: {name} delta is {module.b.shape[0]}x{module.a.shape[1]} but the "
                               f"model's weight is {expected[0]}x{expected[1]}: different base model")
        linears[name] = layer
    return linears


@torch.no_grad()
def merge_lora(model: nn.Module, lora: LoRAWeights) -> int:
    """Add every delta into the model's weights in place (fp32 arithmetic, one rounding); returns the count."""
    linears = target_linears(model, lora)
    for name, layer in linears.items():
        merged = layer.weight.float() + lora.modules[name].delta().to(layer.weight.device)
        layer.weight.copy_(merged.to(layer.weight.dtype))
    return len(linears)
