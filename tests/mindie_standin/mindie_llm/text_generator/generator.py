"""Stand-in for ``mindie_llm.text_generator.generator``, reduced to MindIE's start-up order (MindIE-LLM 8b4871a).

``Generator.__init__`` (:212-545) as far as a torch-backend model sees it:

1. ``backend_type == "torch"`` sets ``ENV.model_runner_exp = True`` (:303-305), so the generator
   backend is ``GeneratorAclGraph`` and the wrapper ``AclGraphModelWrapperExp``, whose constructor
   builds ``ModelRunnerExp`` and loads the weights;
2. a warm-up KV pool of **one block** (``calc_block_mem``, :498-504), eager mode with padding
   switched on (:512-513), and the warm-up (:515-516): one prefill batch of dummy requests
   (token id 1, all-zero block tables, only the batch's first token writes the cache, at slot 0;
   tg_infer_context_store.py:617-623) then, for standard instances, one padded decode step of those
   requests (still zero tables: slots collide in block 0). Its outputs are discarded;
3. the real pool (``_update_kvcache_settings(npu_mem)``, :519) -- new, uninitialised tensors;
4. eager mode with padding off, then ``generator_backend.compile()`` (:526-528): bind the new pool
   and capture every decode size.

Reduced: MindIE's ``Request``/``InputMetadata``/plugin manager/sampler are replaced by
``_TGSequence`` and ``_compose_model_inputs`` (what ``TGInferContextStore.compose_model_inputs``
builds for a standard prefill or decode step), and warm-up tokens are picked greedily (MindIE
samples; warm-up outputs are discarded either way). ``npu_mem`` must be given (profiling with -1 is
not modelled) and may be a fraction of a GiB. PD separation, plugins (prefix cache, MTP, splitfuse),
LoRA, DAP, swapping and fault recovery are not modelled; the TG's scheduling entry points
(``generate_token``, ``prefill``, ``decode``) are played by the test harness instead.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
from mindie_llm.text_generator.adapter import get_generator_backend
from mindie_llm.text_generator.utils.kvcache_settings import KVCacheSettings
from mindie_llm.text_generator.utils.model_input import ModelInput
from mindie_llm.text_generator.utils.npu_mem_tool import calc_block_mem, gb
from mindie_llm.utils.env import ENV
from mindie_llm.utils.log.logging import logger, print_log

STANDARD_TAG = "standard"
_PD_ROLES = ("prefill", "decoder", "flex")  # DmiModeNodeRole values that start a KV transfer engine (:177-198)


@dataclass
class WarmupParams:
    max_prefill_tokens: int = 4096
    max_seq_len: int = 2560
    max_input_len: int = 1
    max_iter_times: int = 2560

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{item.name} must be a positive integer, got {value}")


class PDModelConfig:
    def __init__(self, config: dict[str, Any]) -> None:
        self.model_role = config.get("role", STANDARD_TAG)
        self.local_cluster_id = int(config.get("local_instance_id", 0))
        self.local_logic_device_id = int(config.get("npu_device_id", 0))


class PDInterface:
    def __init__(self, pd_config: PDModelConfig) -> None:
        self.pd_config = pd_config
        self.separate_deployment_worker = None
        self.device_inited = False

    def link(self, **kwargs: Any) -> None:
        raise NotImplementedError("not modelled: PD separation")

    def unlink(self, remote_cluster_id: int) -> Any:
        raise NotImplementedError("not modelled: PD separation")

    def unlink_batch(self, remote_cluster_ids: list[int]) -> Any:
        raise NotImplementedError("not modelled: PD separation")

    def query_link_status(self) -> Any:
        raise NotImplementedError("not modelled: PD separation")

    def switch_role(self, role: str) -> None:
        self.pd_config.model_role = role

    def pull_kv(self, input_metadata: Any, p_d_infos: list) -> Any:
        raise NotImplementedError("not modelled: PD separation")

    def _init_sepd_engine(self) -> None:
        if self.pd_config.model_role in _PD_ROLES:
            logger.warning(f"not modelled: the KV transfer engine of a {self.pd_config.model_role} node")


@dataclass
class _TGSequence:
    """Stand-in for what the TG keeps per sequence (``Request``/``Sequence`` + ``BatchContext`` rows).

    ``token_ids`` are the prompt and the tokens generated so far; ``block_table`` the KV block ids
    in order (the scheduler's block manager owns them).
    """

    token_ids: list[int]
    block_table: list[int]
    max_output_len: int = 0
    prompt_len: int = 0


def _compose_model_inputs(sequences: list[_TGSequence], is_prefill: bool, block_size: int,
                          position_ids_gen_func: Callable[[np.ndarray], Any], warmup: bool = False) -> ModelInput:
    """The ``ModelInput`` of one standard (non-splitfuse) step, as the TG builds it.

    Block tables: one row per sequence, padded with -1 to the batch's widest (input_metadata.py:170-187).
    Prefill (tg_infer_context_store.py:514-571): every prompt token, positions from the model's
    ``generate_position_ids``, slot ``block * block_size + offset`` per token (in warm-up only the
    batch's first token writes, to slot 0), lengths = prompt lengths, ``prefill_head_indices`` each
    prompt's last token. Decode (batch_context.py:866-945): each sequence's last token at position
    ``len - 1`` with its slot, lengths including that token, no head indices.
    ``context_length`` is a numpy int32 array (tg_infer_context_store.py:526); ``max_seq_len`` its maximum.
    """
    tables = np.full((len(sequences), max(len(s.block_table) for s in sequences)), -1, dtype=np.int32)
    for row, sequence in zip(tables, sequences, strict=True):
        row[: len(sequence.block_table)] = sequence.block_table

    def slot(sequence: _TGSequence, position: int) -> int:
        return sequence.block_table[position // block_size] * block_size + position % block_size

    if is_prefill:
        lengths = np.array([len(s.token_ids) for s in sequences], dtype=np.int32)
        input_ids = np.concatenate([np.asarray(s.token_ids, dtype=np.int64) for s in sequences])
        position_ids = np.concatenate([np.fromiter(position_ids_gen_func(np.asarray(s.token_ids)), dtype=np.int32)
                                       for s in sequences])
        slots = np.full(len(input_ids), -1, dtype=np.int32)
        if warmup:
            slots[0] = 0
        else:
            slots[:] = [slot(s, p) for s in sequences for p in range(len(s.token_ids))]
        head_indices = np.cumsum(lengths).astype(np.int64) - 1
    else:
        lengths = np.array([len(s.token_ids) for s in sequences], dtype=np.int32)
        input_ids = np.array([s.token_ids[-1] for s in sequences], dtype=np.int64)
        position_ids = lengths - 1
        slots = np.array([slot(s, len(s.token_ids) - 1) for s in sequences], dtype=np.int32)
        head_indices = None
    return ModelInput(input_ids=input_ids, position_ids=position_ids, block_tables=tables, slots=slots,
                      context_length=lengths, cached_context_length=lengths, max_seq_len=int(lengths.max()),
                      prefill_head_indices=head_indices, is_prefill=is_prefill)


class Generator(PDInterface):
    def __init__(self, model_config: dict[str, Any]) -> None:
        self.model_config = model_config
        self.cpu_mem = model_config["cpu_mem"]
        self.npu_mem = model_config["npu_mem"]
        self.block_size = int(model_config["block_size"])
        max_seq_len = int(model_config["max_seq_len"])
        max_iter_times = int(model_config["max_iter_times"])
        max_input_len = int(model_config["max_input_len"])
        self.max_batch_size = int(model_config["max_batch_size"])
        self.max_prefill_batch_size = int(model_config["max_prefill_batch_size"])
        max_prefill_tokens = int(model_config["max_prefill_tokens"])
        self.soc_version = model_config.get("soc_version")
        self.max_seq_len, self.max_iter_times, self.max_input_len = max_seq_len, max_iter_times, max_input_len
        self.max_prefill_tokens = max_prefill_tokens
        self.pd_config = PDModelConfig(model_config)
        super().__init__(self.pd_config)
        if model_config.get("plugin_params"):
            raise NotImplementedError(f"not modelled: plugins ({model_config['plugin_params']})")
        self.num_speculative_tokens = 0
        self.max_generated_tokens = 1
        model_config["num_speculative_tokens"] = self.num_speculative_tokens
        self.backend_type = model_config.get("backend_type", "atb")
        if self.backend_type == "torch":
            ENV.model_runner_exp = True
        self.rank = int(model_config["rank"])
        self.world_size = int(model_config["world_size"])
        model_config["async_inference"] = ENV.async_inference
        model_config["splitfuse_enabled"] = False
        self.generator_backend = get_generator_backend(model_config)
        self.model_wrapper = self.generator_backend.model_wrapper
        self.model_info = self.generator_backend.model_info
        self.tokenizer = self.generator_backend.tokenizer
        self.vocab_size = self.model_wrapper.config.vocab_size
        self.dp_size, self.cp_size = self.model_wrapper.dp_size, self.model_wrapper.cp_size

        block_mem_size_gb = gb(calc_block_mem(self.model_info, self.block_size, self.num_speculative_tokens))
        print_log(self.rank, logger.info, f"One block during warmup needs npu memory(GiB): {block_mem_size_gb}")
        self._update_kvcache_settings(block_mem_size_gb)
        if self.backend_type == "torch":
            self.generator_backend.model_wrapper.model_runner.set_eager_mode_with_padding(True)
        npu_mem = self.warm_up(WarmupParams(max_prefill_tokens, max_seq_len, max_input_len, max_iter_times))
        self._init_sepd_engine()
        self.kvcache_settings = self._update_kvcache_settings(npu_mem)
        if self.backend_type == "torch":
            self.generator_backend.model_wrapper.model_runner.set_eager_mode_with_padding(False)
            self.generator_backend.compile()

    def build_inputs(self, conversations: list[list[dict[str, str]]], **kwargs: Any) -> list[list[int]]:
        return [self.model_wrapper.make_context(conversation, **kwargs) for conversation in conversations]

    def clear_cache(self, sequence_ids: Any) -> None:
        raise NotImplementedError("not modelled: the TG's per-sequence context (the harness keeps its own)")

    def copy_blocks(self, src_dst_map: Any) -> None:
        raise NotImplementedError("not modelled: copying KV blocks")

    def check_batch_size_limit(self, is_prefill: bool, is_mix: bool, batch_size: int) -> None:
        max_allowed = self.max_batch_size if is_mix or not is_prefill else self.max_prefill_batch_size
        if batch_size > max_allowed:
            logger.warning(f"The `batch_size` is {batch_size} but max batchsize is {max_allowed}. "
                           "The `batch_size` should be less than max batchsize.")

    def generate_token(self, input_metadata: Any, warmup: bool = False) -> Any:
        raise NotImplementedError("not modelled: the TG scheduler's entry points (the test harness plays them)")

    def generate(self, requests: list[Any], is_prefill: bool = False) -> Any:
        raise NotImplementedError("not modelled: the TG scheduler's entry points (the test harness plays them)")

    def prefill(self, requests: list[Any]) -> Any:
        raise NotImplementedError("not modelled: the TG scheduler's entry points (the test harness plays them)")

    def decode(self, requests: list[Any]) -> Any:
        raise NotImplementedError("not modelled: the TG scheduler's entry points (the test harness plays them)")

    def generate_mix(self, requests: list[Any], is_prefill_batch: np.ndarray) -> Any:
        raise NotImplementedError("not modelled: splitfuse")

    def warm_up(self, warmup_params: WarmupParams) -> float:
        """Run the warm-up for this instance's role; returns the GiB to give the KV cache (:760-820)."""
        npu_mem = 5 if self.soc_version == 240 else self.npu_mem
        if npu_mem == -1:
            raise NotImplementedError("not modelled: sizing the KV cache by profiling (npuMemSize -1)")
        self._warmup_specified(warmup_params, npu_mem * 1024 ** 3)
        return npu_mem

    def swap(self, block_operation: Any) -> None:
        raise NotImplementedError("not modelled: swapping")

    def load_lora(self, lora_name: str, lora_path: str) -> Any:
        raise NotImplementedError("not modelled: LoRA")

    def unload_lora(self, lora_name: str) -> Any:
        raise NotImplementedError("not modelled: LoRA")

    def execute_recover_command(self, command: str) -> dict:
        raise NotImplementedError("not modelled: fault recovery")

    def _execute_warm_up(self, requests: list[_TGSequence], is_prefill: bool) -> np.ndarray:
        """One warm-up step through the backend; returns each request's greedy next token."""
        model_inputs = _compose_model_inputs(requests, is_prefill, self.block_size, self.model_wrapper.generate_position_ids,
                                             warmup=True)
        logits = self.generator_backend.forward(model_inputs, q_lens=None, spec_mask=None, sub_model_inputs=None,
                                                hidden_states=None, warmup_is_end=False)
        return logits.float().argmax(dim=-1).cpu().numpy()

    def _get_warm_up_params(self, warmup_params: WarmupParams) -> int:
        return min(warmup_params.max_seq_len, warmup_params.max_input_len + warmup_params.max_iter_times)

    def _get_warm_up_reqs(self, warmup_params: WarmupParams, max_output_len: int = 1, do_prefix_cache_warmup: bool = False,
                          do_dap_warmup: bool = False) -> list[_TGSequence]:
        """Dummy requests of token id 1 with all-zero block tables (request.py:95-118, :169-188)."""
        lengths = self._get_request_lengths_by_dp(self._get_warm_up_params(warmup_params), do_prefix_cache_warmup,
                                                  do_dap_warmup)
        return [_TGSequence(token_ids=[1] * length, block_table=[0] * math.ceil(length / self.block_size),
                            max_output_len=max_output_len, prompt_len=length) for length in lengths]

    def _warmup_prefill(self, warmup_params: WarmupParams) -> None:
        self._auto_warmup_prefill(warmup_params)

    def _warmup_decode(self, warmup_params: WarmupParams) -> None:
        self._auto_warmup_decode(warmup_params)

    def _warmup_standard(self, warmup_params: WarmupParams) -> None:
        self._auto_warmup(warmup_params)

    def _warmup_specified(self, warmup_params: WarmupParams, npu_mem: float) -> None:
        role = self.pd_config.model_role
        if role in (STANDARD_TAG, "flex"):
            self._warmup_standard(warmup_params)
        elif role == "prefill":
            self._warmup_prefill(warmup_params)
        elif role == "decoder":
            self._warmup_decode(warmup_params)

    def _update_kvcache_settings(self, npu_mem: float) -> KVCacheSettings:
        """A new ``KVCacheSettings`` for ``npu_mem`` GiB and a new pool in the backend (:1145-1219)."""
        settings = KVCacheSettings(self.rank, self.model_info, self.cpu_mem, npu_mem, self.block_size, self.backend_type,
                                   self.separate_deployment_worker is not None, self.num_speculative_tokens)
        self.generator_backend.update_cache_policy(settings, self.separate_deployment_worker)
        return settings

    def _auto_warmup(self, warmup_params: WarmupParams, do_prefix_cache_warmup: bool = False,
                     do_dap_warmup: bool = False) -> None:
        requests = self._generate_warmup_requests(warmup_params, do_prefix_cache_warmup, do_dap_warmup)
        output = self._execute_warm_up(requests, is_prefill=True)
        decode_requests, new_tokens = self._filter_end_reqs(requests, output)
        if decode_requests:
            self._warmup_decode_iteration(decode_requests, new_tokens)

    def _warmup_decode_iteration(self, decode_reqs: list[_TGSequence], reqs_out_token_num: list[int]) -> None:
        """``Request.step``: the block table grows (still zeros) to hold prompt + output + 1 placeholder."""
        for request in decode_reqs:
            output_len = len(request.token_ids) - request.prompt_len - 1
            request.block_table = [0] * math.ceil((request.prompt_len + output_len + 1) / self.block_size)
        self._execute_warm_up(decode_reqs, is_prefill=False)

    def _auto_warmup_prefill(self, warmup_params: WarmupParams, do_prefix_cache_warmup: bool = False) -> None:
        requests = self._generate_warmup_requests(warmup_params, do_prefix_cache_warmup)
        remaining, _ = self._filter_end_reqs(requests, self._execute_warm_up(requests, is_prefill=True))
        if remaining:
            raise ValueError(f"Expected 0 decode requests, got {len(remaining)}")

    def _auto_warmup_decode(self, warmup_params: WarmupParams) -> None:
        raise NotImplementedError("not modelled: decoder-node warm-up (PD separation)")

    def _generate_warmup_requests(self, warmup_params: WarmupParams, do_prefix_cache_warmup: bool = False,
                                  do_dap_warmup: bool = False) -> list[_TGSequence]:
        max_output_len = 2 if self.pd_config.model_role in (STANDARD_TAG, "flex") else 1
        return self._get_warm_up_reqs(warmup_params, max_output_len, do_prefix_cache_warmup, do_dap_warmup)

    def _validate_warmup_memory(self, warmup_params: WarmupParams, npu_mem: float) -> float:
        raise NotImplementedError("not modelled: sizing the KV cache by profiling (npuMemSize -1)")

    def _filter_end_reqs(self, requests: list[_TGSequence], generation_output: np.ndarray) -> tuple[list[_TGSequence], list[int]]:
        """Append each request's new token; keep those below their ``max_output_len`` (warm-up ignores EOS)."""
        unfinished = []
        for request, token in zip(requests, generation_output, strict=True):
            request.token_ids.append(int(token))
            if len(request.token_ids) - request.prompt_len < request.max_output_len:
                unfinished.append(request)
        return unfinished, [1] * len(unfinished)

    def _get_request_lengths_by_dp(self, max_len: int, do_prefix_cache_warmup: bool = False,
                                   do_dap_warmup: bool = False) -> list[int]:
        """Warm-up prompt lengths: ``max_prefill_tokens`` split over at most ``max_batch_size`` requests (:1355-1417)."""
        if do_prefix_cache_warmup or do_dap_warmup or self.cp_size > 1:
            raise NotImplementedError("not modelled: prefix-cache / DAP / context-parallel warm-up")
        per_dp = self.max_prefill_batch_size if self.pd_config.model_role == "prefill" else self.max_batch_size
        tokens = self.max_prefill_tokens
        if max_len * per_dp <= tokens:
            lengths = [max_len] * (tokens // max_len) + ([tokens % max_len] if tokens % max_len else [])
        else:
            base = tokens // per_dp
            count = tokens // base + (1 if tokens % base else 0)
            if count <= per_dp:
                lengths = [base] * (tokens // base) + ([tokens % base] if tokens % base else [])
            else:
                lengths = [base] * per_dp
                for i in range(tokens - per_dp * base):
                    lengths[i % per_dp] += 1
        return lengths[:per_dp]
