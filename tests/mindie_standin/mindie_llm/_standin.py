"""Stand-in only, no MindIE counterpart: the device namespace and the process-wide state a test resets.

On an Ascend host ``import torch_npu`` patches ``torch.npu`` to be ``torch_npu.npu``; MindIE calls
``torch.npu.NPUGraph``, ``torch.npu.graph``, ``torch.npu.current_stream`` and friends. CPU torch has
no ``torch.npu``, so the stand-in reaches the emulated package tests install in
``sys.modules["torch_npu"]`` (``npu_emulator.build_module()`` / the ``torch_npu_emulator`` fixture)
at call time, never at import, so importing the tree needs no emulator.
"""

from __future__ import annotations

import sys
from types import ModuleType


def torch_npu() -> ModuleType:
    """The ``torch_npu`` module this process runs with (the emulator in tests)."""
    module = sys.modules.get("torch_npu")
    if module is None:
        raise RuntimeError("the MindIE stand-in needs torch_npu: install the emulator "
                           "(npu_emulator.build_module() in sys.modules['torch_npu'], or the torch_npu_emulator fixture)")
    return module


def npu() -> ModuleType:
    """What MindIE reaches as ``torch.npu`` (= ``torch_npu.npu`` on a device)."""
    return torch_npu().npu


def reset_process_state() -> None:
    """Forget everything a MindIE process accumulates, as a fresh process would start.

    MindIE keeps module-level state for the life of the process: the attention registry, the
    loader's parameter dict (which aliases parameters of a second model with the same names), the
    forward context, the static input buffers, the graph pool and capture flag, the parallel-info
    manager, ``ENV.model_runner_exp``. A harness that stands for one MindIE process calls this before
    building it.
    """
    from mindie_llm.runtime.compilation import aclgraph_backend
    from mindie_llm.runtime.layers import attention
    from mindie_llm.runtime.model_runner import forward_context_exp
    from mindie_llm.runtime.model_runner.input_buffer import input_buffer
    from mindie_llm.runtime.utils import distributed
    from mindie_llm.runtime.utils.loader import default_model_loader
    from mindie_llm.utils.env import ENV

    attention._global_attn_dict = None
    default_model_loader._global_param_dict = None
    forward_context_exp._forward_context = None
    forward_context_exp._MC2_TOKEN_CAPACITY = None
    input_buffer._buffers.clear()
    aclgraph_backend.set_global_graph_memory_pool(None)
    aclgraph_backend.set_aclgraph_capturing_enabled(False)
    distributed.set_parallel_info_manager(None)
    ENV.model_runner_exp = False
