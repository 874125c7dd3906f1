"""Stand-in for ``mindie_llm.modeling.model_wrapper`` (MindIE-LLM 8b4871a, modeling/model_wrapper/__init__.py:17-51).

The torch backend gets ``AclGraphModelWrapperExp`` when ``ENV.model_runner_exp`` is set -- which
``Generator.__init__`` does for ``backend_type == "torch"`` -- and the older ``AclGraphModelWrapper``
otherwise (not modelled, nor the ATB wrappers or the tokenizer wrappers).
"""

from __future__ import annotations

from typing import Any

from mindie_llm.modeling.backend_type import BackendType
from mindie_llm.utils.env import ENV


def get_model_wrapper(model_config: dict[str, Any], backend_type: str) -> Any:
    if backend_type == BackendType.TORCH:
        if not ENV.model_runner_exp:
            raise NotImplementedError("not modelled: AclGraphModelWrapper (the torch runner before ModelRunnerExp)")
        from mindie_llm.modeling.model_wrapper.aclgraph.aclgraph_model_wrapper_exp import AclGraphModelWrapperExp

        return AclGraphModelWrapperExp(**model_config)
    if backend_type == BackendType.ATB:
        raise NotImplementedError("not modelled: ATBModelWrapper")
    raise NotImplementedError(f"{backend_type} not implemented, supported backends `{BackendType.__members__.values()}`")


def get_tokenizer_wrapper(model_id: str, backend_type: str, **kwargs: Any) -> Any:
    raise NotImplementedError("not modelled: tokenizer wrappers")
