"""Stand-in for ``mindie_llm.text_generator.adapter`` (MindIE-LLM 8b4871a, text_generator/adapter/__init__.py:17-38)."""

from __future__ import annotations

from typing import Any

from mindie_llm.modeling.backend_type import BackendType
from mindie_llm.utils.log.logging import logger


def get_generator_backend(model_config: dict[str, Any]) -> Any:
    """``GeneratorAclGraph`` for ``backend_type == "torch"`` (the ATB generators are not modelled)."""
    backend_type = model_config.get("backend_type", None)
    if backend_type == BackendType.TORCH:
        from mindie_llm.text_generator.adapter.generator_aclgraph import GeneratorAclGraph

        return GeneratorAclGraph(model_config)
    if backend_type == BackendType.ATB:
        raise NotImplementedError("not modelled: GeneratorTorch / GeneratorTorchAsync (ATB backend)")
    logger.error('Unsupported backend type. The `backend_type` field only supports either "atb" or "torch".')
    raise NotImplementedError(f"{backend_type} not implemented, supported backends `{BackendType.__members__.values()}`")
