"""Stand-in for ``mindie_llm.runtime.utils.distributed.parallel_info_manager`` (MindIE-LLM 8b4871a).

The group bookkeeping follows parallel_info_manager.py: TP-style groups are contiguous ranks
(:368-395), DP-style groups strided (:397-420), ``-1`` means "the whole world" for TP and "1" for
DP, a group is enabled when it has more than one rank (:147-154). Deviation: MindIE reads the world
size and rank from the HCCL process group (:194-195) and creates process groups lazily through
factories; the stand-in takes them from ``init_distributed``'s arguments and creates none (no
process group exists on CPU), so ``process_group``/``cpu_process_group`` stay None.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum, unique
from threading import Lock
from typing import Any

from mindie_llm.runtime.utils.distributed.utils import even_divide

DEFAULT_BUFFER_SIZE = 128
HCCL_BACKEND = "hccl"
GLOO_BACKEND = "gloo"
# Stand-in only: (rank, world_size) as init_distributed received them; MindIE asks the process group.
_world: tuple[int, int] = (0, 1)


@unique
class ParallelType(str, Enum):
    WORLD = "world"
    ATTN_TP = "attn_tp"
    ATTN_DP = "attn_dp"
    ATTN_CP = "attn_cp"
    ATTN_INNER_SP = "attn_inner_sp"
    ATTN_O_PROJ_TP = "attn_o_proj_tp"
    MLP_TP = "mlp_tp"
    WORLD_EMBED_TP = "world_embed_tp"
    LM_HEAD_TP = "lm_head_tp"
    MOE_TP = "moe_tp"
    MOE_EP = "moe_ep"
    MOE_EP_MC2 = "moe_ep_mc2"


@dataclass
class ParallelInfo:
    """One kind of parallel group: its size, the rank lists of all groups, this rank's place in its group."""

    buffer_size: int = DEFAULT_BUFFER_SIZE
    group_size: int = 1
    num_group: int | None = None
    rank_per_group: list[list[int]] | None = None
    current_group_id: int | None = None
    rank: int | None = None
    is_reusable: bool = True

    _process_group: Any = field(default=None, init=False)
    _cpu_process_group: Any = field(default=None, init=False)
    _pg_factory: Any = field(default=None, init=False)

    def __init__(self, buffer_size: int = DEFAULT_BUFFER_SIZE, group_size: int = 1, num_group: int | None = None,
                 rank_per_group: list[list[int]] | None = None, current_group_id: int | None = None,
                 rank: int | None = None, is_reusable: bool = True) -> None:
        self.buffer_size = buffer_size
        self.group_size = group_size
        self.num_group = num_group
        self.rank_per_group = rank_per_group
        self.current_group_id = current_group_id
        self.rank = rank
        self.is_reusable = is_reusable
        self._pg_factory = None
        self._process_group = None
        self._cpu_process_group = None

    @property
    def process_group(self) -> Any:
        return self._process_group

    @property
    def cpu_process_group(self) -> Any:
        return self._cpu_process_group

    def set_pg_factory(self, factory: Any) -> None:
        self._pg_factory = factory

    def is_enabled(self) -> bool:
        return self.group_size > 1


class ParallelInfoManager:
    """Every parallel group of this rank, looked up by ``ParallelType`` (parallel_info_manager.py:157-344)."""

    _process_group_cache: dict[tuple, Any] = {}
    _process_group_cache_lock = Lock()

    def __init__(self, local_rank: int, llm_config: Any = None, server_config: dict | None = None) -> None:
        self.hccl_buffer = DEFAULT_BUFFER_SIZE
        self.server_config = {} if server_config is None else server_config
        self.rank, self.world_size = _world
        self.local_rank = local_rank
        self.is_distribution_enabled = self.server_config.get("distributed_enable", False)
        config = self.server_config
        self.world = self._init_tp_parallel_info(self.world_size)
        self.attn_tp = self._init_tp_parallel_info(config.get("tp", self.world_size))
        self.attn_dp = self._init_dp_parallel_info(config.get("dp", -1))
        self.attn_cp = self._init_dp_parallel_info(config.get("cp", -1))
        self.moe_tp = self._init_tp_parallel_info(config.get("moe_tp", -1), 64)  # :206-207, 64 MB buffer
        self.moe_ep = self._init_dp_parallel_info(config.get("moe_ep", -1), 256)  # :208-209, 256 MB buffer
        if self.moe_tp.group_size * self.moe_ep.group_size != self.world_size:
            raise ValueError(f"MoE parallel strategy process number mismatch: global world_size({self.world_size}) != "
                             f"moe_tp.group_size({self.moe_tp.group_size}) × moe_ep.group_size({self.moe_ep.group_size})")
        # MindIE sizes this buffer from $HCCL_BUFFSIZE and fails without it (:217); no HCCL here.
        self.moe_ep_mc2 = self._init_dp_parallel_info(config.get("moe_ep", -1), DEFAULT_BUFFER_SIZE, is_reusable=False)
        sp = config.get("sp", -1)
        self.attn_inner_sp = self._init_tp_parallel_info(1 if sp == -1 else sp)
        self.mlp_tp = self._init_tp_parallel_info(config.get("tp", self.world_size))
        self.word_embed_tp = self.attn_tp
        self.lm_head_tp = self.mlp_tp
        self._parallel_type_map = {
            ParallelType.ATTN_TP: self.attn_tp, ParallelType.WORLD_EMBED_TP: self.attn_tp,
            ParallelType.ATTN_O_PROJ_TP: self.attn_tp, ParallelType.ATTN_DP: self.attn_dp,
            ParallelType.MLP_TP: self.mlp_tp, ParallelType.LM_HEAD_TP: self.mlp_tp,
            ParallelType.ATTN_CP: self.attn_cp, ParallelType.ATTN_INNER_SP: self.attn_inner_sp,
            ParallelType.MOE_TP: self.moe_tp, ParallelType.MOE_EP: self.moe_ep, ParallelType.WORLD: self.world,
            ParallelType.MOE_EP_MC2: self.moe_ep_mc2,
        }

    @staticmethod
    def pp_layers(num_layers: int) -> list[int]:
        return list(range(num_layers))

    @staticmethod
    def has_pp() -> bool:
        return False

    @staticmethod
    def _get_current_group_id(rank_per_group: list[list[int]], target_rank_id: int) -> int | None:
        return next((i for i, group in enumerate(rank_per_group) if target_rank_id in group), None)

    @classmethod
    def _get_or_create_process_group(cls, ranks: list[int], backend: str = HCCL_BACKEND, hccl_buffer_size: int | None = None,
                                     is_reusable: bool = True, stream_id: int | None = None) -> Any:
        raise NotImplementedError("not modelled: process groups (no HCCL on a CPU machine)")

    def has_attn_cp(self) -> bool:
        return self.get(ParallelType.ATTN_CP).is_enabled()

    def has_attn_inner_sp(self) -> bool:
        return self.get(ParallelType.ATTN_INNER_SP).is_enabled()

    def has_attn_o_proj_tp(self) -> bool:
        return self.get(ParallelType.ATTN_O_PROJ_TP).is_enabled()

    def has_dp(self) -> bool:
        return self.get(ParallelType.ATTN_DP).is_enabled()

    def has_attn_tp(self) -> bool:
        return self.get(ParallelType.ATTN_TP).is_enabled()

    def has_moe_tp(self) -> bool:
        return self.get(ParallelType.MOE_TP).is_enabled()

    def has_moe_ep(self) -> bool:
        return self.get(ParallelType.MOE_EP).is_enabled()

    def has_lm_head_local_tp(self) -> bool:
        return self.get(ParallelType.LM_HEAD_TP).group_size < self.world_size

    def get(self, parallel_type: ParallelType) -> ParallelInfo:
        if parallel_type not in self._parallel_type_map:
            raise KeyError(f"Unsupported ParallelType: {parallel_type}")
        return self._parallel_type_map[parallel_type]

    def _make_process_group_factory(self, parallel_info: ParallelInfo) -> Any:
        raise NotImplementedError("not modelled: process groups (no HCCL on a CPU machine)")

    def _init_tp_parallel_info(self, group_size: int | None = None, hccl_buffersize: int = DEFAULT_BUFFER_SIZE,
                               is_reusable: bool = True) -> ParallelInfo:
        """Contiguous groups: ``[[0..g-1], [g..2g-1], ...]``; ``None``/-1 means one group of the whole world."""
        if group_size is None or group_size == -1:
            group_size = self.world_size
        num_group = even_divide(self.world_size, group_size)
        groups = [list(range(i * group_size, (i + 1) * group_size)) for i in range(num_group)]
        return self._info(groups, group_size, hccl_buffersize, is_reusable)

    def _init_dp_parallel_info(self, group_size: int | None = None, hccl_buffersize: int = DEFAULT_BUFFER_SIZE,
                               is_reusable: bool = True) -> ParallelInfo:
        """Strided groups: ``[[0, n, 2n, ...], [1, n+1, ...], ...]``; -1 means groups of one."""
        if group_size == -1:
            group_size = 1
        num_group = even_divide(self.world_size, group_size)
        groups = [list(range(i, self.world_size, num_group)) for i in range(num_group)]
        return self._info(groups, group_size, hccl_buffersize, is_reusable)

    def _info(self, groups: list[list[int]], group_size: int, buffer_size: int, is_reusable: bool) -> ParallelInfo:
        """Stand-in helper shared by the two initialisers (MindIE repeats it in each)."""
        group_id = self._get_current_group_id(groups, self.rank)
        return ParallelInfo(buffer_size=buffer_size, group_size=group_size, num_group=len(groups), rank_per_group=groups,
                            current_group_id=group_id, rank=groups[group_id].index(self.rank), is_reusable=is_reusable)
