"""Stand-in for ``mindie_llm.runtime.utils.loader.default_model_loader`` (MindIE-LLM 8b4871a, same path).

How MindIE fills a model's parameters:

- ``load_weights`` first reads ``model.config.quantize`` without a guard (:46): a model that never
  set ``self.config`` fails here with AttributeError (``nn.Module.__getattr__``);
- the walk visits only *leaf* modules, found through ``named_children`` (:58-66); a module with
  children is never loaded itself, and modules not registered as children are never seen;
- a leaf's own ``named_parameters()`` are read as ``f"{prefix}.{name}"`` and handed to
  ``param.weight_loader(param, tensor)`` (every parameter needs that attribute, :83-102); a missing
  name is retried with the module's own ``prefix`` attribute if it has one, else
  ``ValueError("Cannot load weights of <name>.")``;
- every loaded parameter goes into a process-wide dict; a later parameter with a name already
  loaded in this process gets ``param.data = earlier.data`` instead of being read (:170-184). The
  dict is never cleared (``_standin.reset_process_state`` clears it for tests);
- afterwards ``impl.process_weights_after_loading()`` for a leaf whose ``impl`` is an ``AttentionImpl``.

Not modelled (raise): W8A8SC name mapping, ``MergedColumnParallelLinear`` sub-linears, list
prefixes of fused layers, ``FusedMoE`` experts, quantization post-processing. The progress bar is a log line.
"""

from __future__ import annotations

from typing import Any

from mindie_llm.runtime.layers.attention.backend.abstract import AttentionImpl
from mindie_llm.runtime.utils.distributed import get_parallel_info_manager
from mindie_llm.runtime.utils.loader.weight_utils import WeightsFileHandler
from mindie_llm.utils.log.logging import logger
from torch import nn

_global_param_dict: dict[str, Any] | None = None


class DefaultModelLoader:
    def __init__(self) -> None:
        self._loaded_weight_names: list[str] = []
        self._weight_file_handler: WeightsFileHandler | None = None

    def load_weights(self, model: nn.Module, model_path: str) -> None:
        quantize = getattr(model.config, "quantize", None)
        self._weight_file_handler = WeightsFileHandler(model_path, ".safetensors", quantize)
        self._load_modules(model)
        self._weight_file_handler.release_file_handler()
        logger.info("Loading weights done")

    def _get_total_leaf_modules(self, module: nn.Module, prefix: str = "") -> dict[str, nn.Module]:
        if len(list(module.children())) == 0:
            return {prefix: module}
        leaves: dict[str, nn.Module] = {}
        for name, child in module.named_children():
            leaves.update(self._get_total_leaf_modules(child, f"{prefix}.{name}" if prefix else name))
        return leaves

    def _load_multi_prefix_module(self, module: nn.Module) -> None:
        raise NotImplementedError("not modelled: fused layers with a list of prefixes (e.g. QKVParallelLinear)")

    def _load_single_prefix_module(self, module: nn.Module, prefix: str) -> None:
        for weight_suffix, param in module.named_parameters():
            if param is None:
                continue
            full_param_name = f"{prefix}.{weight_suffix}"
            if check_and_reuse_global_param_dict(param, full_param_name):
                continue
            try:
                loaded_weight = self._weight_file_handler.get_tensor(full_param_name)
            except ValueError as error:
                if "Weight file was not found" not in str(error) or not hasattr(module, "prefix"):
                    raise ValueError(f"Cannot load weights of {full_param_name}.") from error
                full_param_name = f"{module.prefix}.{weight_suffix}"  # e.g. a tied lm_head (:95-98)
                loaded_weight = self._weight_file_handler.get_tensor(full_param_name)
            param.weight_loader(param, loaded_weight)
            update_global_param_dict(full_param_name, param)

    def _load_modules_with_progress(self, modules_dict: dict[str, nn.Module], pbar: Any, model: nn.Module | None = None) -> None:
        quantize = ""
        if model is not None and hasattr(model, "config"):
            quantize = (getattr(model.config, "quantize", None) or "").upper()
        if quantize == "W8A8SC":
            raise NotImplementedError("not modelled: W8A8SC weight name mapping")
        for prefix, module in modules_dict.items():
            if isinstance(getattr(module, "prefix", None), list) or hasattr(module, "linear_modules"):
                raise NotImplementedError(f"not modelled: fused/merged layer {prefix} ({type(module).__name__})")
            if hasattr(module, "expert_list"):
                raise NotImplementedError(f"not modelled: FusedMoE layer {prefix}")
            self._load_single_prefix_module(module, prefix)
            if getattr(module, "quant_method", None) is not None:
                raise NotImplementedError(f"not modelled: quantized layer {prefix}")
            impl = getattr(module, "impl", None)
            if isinstance(impl, AttentionImpl):
                impl.process_weights_after_loading()

    def _load_modules(self, model: nn.Module) -> None:
        leaves = self._get_total_leaf_modules(model)
        if not get_parallel_info_manager().rank:  # MindIE's progress bar shows on rank 0 (:158-164)
            logger.info(f"Loading safetensors checkpoint shards in the lazy mode: {len(leaves)} modules")
        self._load_modules_with_progress(leaves, None, model)


def update_global_param_dict(full_param_name: str, param: Any) -> None:
    _global_param_dict[full_param_name] = param


def check_and_reuse_global_param_dict(target_param: Any, full_param_name: str) -> bool:
    """True (and ``target_param`` now shares the earlier tensor) if this name was loaded before in this process."""
    global _global_param_dict
    if _global_param_dict is None:
        _global_param_dict = {}
    if full_param_name in _global_param_dict:
        target_param.data = _global_param_dict[full_param_name].data
        return True
    return False
