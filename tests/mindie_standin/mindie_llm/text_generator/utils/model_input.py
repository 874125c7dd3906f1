"""Stand-in for ``mindie_llm.text_generator.utils.model_input`` (MindIE-LLM 8b4871a, text_generator/utils/model_input.py:22-78).

What the TG hands the backend each step. For a decode step (tg_infer_context_store.py:150-188,
batch_context.py:866-945): ``input_ids`` the last token of each sequence, ``position_ids`` their
positions, ``slots`` one KV slot each, ``context_length`` the numpy int32 lengths including this
step's token, ``max_seq_len`` their maximum, ``block_tables`` the padded (-1) table of the batch,
``prefill_head_indices`` None. For prefill: all prompt tokens flattened, ``prefill_head_indices`` the
index of each prompt's last token. ``cached_context_length`` defaults to ``context_length``.
"""

from __future__ import annotations

from dataclasses import dataclass
from threading import Event
from typing import Any

import numpy as np
from mindie_llm.runtime.model_runner.forward_context_exp import ForwardContext


@dataclass
class ModelInput:
    input_ids: Any
    position_ids: Any
    block_tables: Any
    slots: Any
    context_length: np.ndarray | list[int]
    max_seq_len: int
    prefill_head_indices: np.ndarray | None
    is_prefill: bool
    query_length: np.ndarray | None = None
    adapter_ids: list[str] | None = None
    dp_rank_ids: np.ndarray | None = None
    sp_tokens: np.ndarray | None = None
    cp_tokens: np.ndarray | None = None
    pad_token_count: np.ndarray | None = None
    cached_context_length: np.ndarray | list[int] | None = None
    is_need_mask: list[int] | None = None
    sp_computed_slots_padding_idx: np.ndarray | None = None
    sp_computed_slots_order: list[list[int]] | None = None
    all_rank_prefix_lens: np.ndarray | None = None
    per_rank_prefix_lens: np.ndarray | None = None
    acl_inputs: list[Any] | None = None
    acl_param: str | None = None
    block_tables_array: np.ndarray | None = None
    input_lengths: Any = None
    lm_head_indices: Any = None
    seq_lens: list[list[int]] | None = None
    kwargs: dict[str, Any] | None = None
    layerwise_disaggregated_exe_stage = None
    q_lens: Any = None
    last_hidden_states: Any = None
    forward_context: ForwardContext = None

    def __post_init__(self) -> None:
        if self.cached_context_length is None:
            self.cached_context_length = self.context_length


@dataclass
class ModelInputWrapper:
    cache_ids: np.ndarray
    input_metadata: Any
    model_inputs: ModelInput
    model_kwargs: dict[str, Any]
    sampling_metadata: Any
    trace_ids: list[Any]
    current_dp_sequence_ids: np.ndarray
    postprocess_done: Event
    filling_masks: np.ndarray = None
