"""Stand-in for ``mindie_llm.runtime.utils.loader.default_model_loader``: MindIE's leaf-module walk.

Every leaf module's own parameters are filled through ``param.weight_loader(param, tensor)`` from the
checkpoint tensor named ``<module path>.<parameter name>``; parameters of modules with children are
not visited, as in MindIE.
"""

import json
import os

from safetensors import safe_open
from torch import nn


class DefaultModelLoader:
    def load_weights(self, model: nn.Module, model_path: str) -> None:
        index = os.path.join(model_path, "model.safetensors.index.json")
        if os.path.exists(index):
            with open(index, encoding="utf-8") as f:
                weight_map = json.load(f)["weight_map"]
        else:
            with safe_open(os.path.join(model_path, "model.safetensors"), framework="pt") as f:
                weight_map = dict.fromkeys(f.keys(), "model.safetensors")
        for prefix, module in self._get_total_leaf_modules(model).items():
            for weight_suffix, param in module.named_parameters():
                full_name = f"{prefix}.{weight_suffix}"
                if full_name not in weight_map:
                    raise ValueError(f"Weight file was not found: {full_name}")
                with safe_open(os.path.join(model_path, weight_map[full_name]), framework="pt") as f:
                    param.weight_loader(param, f.get_tensor(full_name))

    def _get_total_leaf_modules(self, module: nn.Module, prefix: str = "") -> dict[str, nn.Module]:
        if len(list(module.children())) == 0:
            return {prefix: module}
        leaves = {}
        for name, child in module.named_children():
            leaves.update(self._get_total_leaf_modules(child, f"{prefix}.{name}" if prefix else name))
        return leaves
