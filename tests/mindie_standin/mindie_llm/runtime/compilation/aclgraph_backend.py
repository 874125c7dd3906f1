"""Stand-in for ``mindie_llm.runtime.compilation.aclgraph_backend`` (MindIE-LLM 8b4871a, compilation/aclgraph_backend.py).

``AclGraphBackend`` wraps the model when ``role != "prefill"``. Each call (:86-148):

- runs the model eagerly while "eager mode with padding" is on (warm-up), for prefill, and when the
  batch has more actual tokens than the largest capture size;
- otherwise looks the graph up by ``forward_context.batch_descriptor``; a missing graph is captured
  only while capturing is enabled (``_warm_up_and_compile``; otherwise RuntimeError): the context's
  ``capturing`` flag is set, and the model runs under ``torch.npu.graph(npu_graph=..., pool=<one pool
  for all graphs>, capture_error_mode="thread_local", auto_dispatch_capture=True)``; its output is
  kept as the graph's static output;
- then replays the graph and calls ``graph.update(cpu_update_input=[{"actual_seq_lengths_kv":
  <seq_lens_list of the first layer's metadata>}])`` -- one dict, which torch_npu applies to every
  captured FIA op; an exception there is only logged ("Ignore graph update failure: ...");
- returns the first ``num_actual_tokens`` rows of the static output (a view of the same tensor
  every step).

Capture sizes (:150-183): 1, 2, 4, then multiples of 8 below the maximum, then the maximum.
Deviation: ``torch.npu`` is the emulated ``torch_npu.npu`` (``mindie_llm._standin.npu``).
"""

from __future__ import annotations

from typing import Any

import torch
from mindie_llm._standin import npu
from mindie_llm.runtime.model_runner.forward_context_exp import get_forward_context
from mindie_llm.utils.log.logging import logger

aclgraph_capturing_enable = False
_global_graph_memory_pool = None


def get_global_graph_memory_pool() -> Any:
    return _global_graph_memory_pool


def set_global_graph_memory_pool(val: Any) -> None:
    global _global_graph_memory_pool
    _global_graph_memory_pool = val


def validate_aclgraph_capturing_enabled() -> None:
    if not aclgraph_capturing_enable:
        raise RuntimeError("ACL graph capturing detected at an inappropriate time. This operation is currently disabled.")


def set_aclgraph_capturing_enabled(enabled: bool) -> None:
    global aclgraph_capturing_enable
    aclgraph_capturing_enable = enabled


class AclGraphBackend:
    def __init__(self, model: Any, max_num_tokens_per_batch: int) -> None:
        self.model = model
        self.graphs: dict[Any, Any] = {}
        self.output_buffer: dict[Any, torch.Tensor] = {}
        self.input_addresses: dict[Any, Any] = {}
        self.capture_sizes = self._get_capture_sizes(max_num_tokens_per_batch)
        self._run_eager_mode_with_padding = False

    def __call__(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        forward_context = get_forward_context()
        batch_descriptor = forward_context.batch_descriptor
        num_actual_tokens = forward_context.num_actual_tokens
        attn_metadata_dict = forward_context.attn_metadata_dict
        if (self._run_eager_mode_with_padding or forward_context.is_prefill
                or num_actual_tokens > self.capture_sizes[-1]):
            return self.model(*args, **kwargs)

        graph = self.graphs.setdefault(batch_descriptor, None)
        if graph is None:
            validate_aclgraph_capturing_enabled()
            graph = npu().NPUGraph()
            if get_global_graph_memory_pool() is None:
                set_global_graph_memory_pool(npu().graph_pool_handle())
            forward_context.capturing = True
            with npu().graph(npu_graph=graph, pool=get_global_graph_memory_pool(), capture_error_mode="thread_local",
                             auto_dispatch_capture=True):
                hidden_state = self.model(*args, **kwargs)
            self.output_buffer[batch_descriptor] = hidden_state
            self.graphs[batch_descriptor] = graph

        graph.replay()
        try:
            first_layer = attn_metadata_dict[next(iter(attn_metadata_dict))]
            graph.update(cpu_update_input=[{"actual_seq_lengths_kv": first_layer.seq_lens_list}])
        except Exception as error:  # MindIE swallows every update failure (:139-145)
            logger.error(f"Ignore graph update failure: {error}.")
        return self.output_buffer[batch_descriptor][:num_actual_tokens]

    @staticmethod
    def _get_capture_sizes(max_num_tokens_per_batch: int, step: int = 8) -> list[int]:
        if max_num_tokens_per_batch < 1:
            raise ValueError(f"max_num_tokens_per_batch must be >= 1, got {max_num_tokens_per_batch}")
        sizes = {1, 2, 4, *range(step, max_num_tokens_per_batch, step), max_num_tokens_per_batch}
        return sorted(s for s in sizes if s <= max_num_tokens_per_batch)

    def get_padded_graph_size(self, x: int) -> int:
        """The smallest capture size that holds ``x`` tokens, or ``x`` itself above the largest."""
        return next((size for size in self.capture_sizes if size >= x), x)

    def compute_logits(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.model.compute_logits(hidden_states)

    def maybe_gather_and_unpad_for_flashcomm(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.model.maybe_gather_and_unpad_for_flashcomm(hidden_states)

    def maybe_pad_and_gather_cross_dp_and_unpad(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.model.maybe_pad_and_gather_cross_dp_and_unpad(hidden_states)

    def set_eager_mode_with_padding(self, is_eager_mode_with_padding: bool) -> None:
        self._run_eager_mode_with_padding = is_eager_mode_with_padding
