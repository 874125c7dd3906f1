"""Continuous batching with chunked prefill and preemption by recomputation.

Every step has a token budget (``max_num_batched_tokens``). Running sequences are served
oldest first: a decoding sequence takes one token, a sequence still in its prompt takes as
much of the rest as the budget and the free blocks allow. When a running sequence cannot get
even one token's blocks, the newest running sequence is preempted: all its blocks and its
slot go back and it waits at the head of the queue to be recomputed (its prefix may come back
from the prefix cache). New requests join in arrival order while budget, slots and blocks
remain, and not in a step that had to preempt. A sibling choice (``n`` > 1) waits until its
leader's prompt is computed, then starts from the leader's blocks in the prefix cache.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from .block_manager import BlockManager
from .sequence import Sequence, SequenceStatus


@dataclass
class ScheduledBatch:
    """One step's work: ``num_tokens[i]`` new tokens of ``seqs[i]``, and conv slots to initialise first.

    ``slot_inits`` pairs a slot with the global block whose conv snapshot it resumes from, or
    None for a sequence that starts from scratch (zero state).
    """

    seqs: list[Sequence] = field(default_factory=list)
    num_tokens: list[int] = field(default_factory=list)
    slot_inits: list[tuple[int, int | None]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.seqs)


class Scheduler:
    def __init__(self, block_manager: BlockManager, max_num_seqs: int, max_num_batched_tokens: int) -> None:
        self.block_manager = block_manager
        self.max_num_seqs = max_num_seqs
        self.max_num_batched_tokens = max_num_batched_tokens
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []  # oldest first
        self.num_preemptions = 0

    def add(self, seq: Sequence) -> None:
        self.waiting.append(seq)

    def has_unfinished(self) -> bool:
        return bool(self.waiting or self.running)

    def schedule(self) -> ScheduledBatch:
        batch = ScheduledBatch()
        budget = self.max_num_batched_tokens
        preempted = False
        i = 0
        while i < len(self.running) and budget > 0:
            seq = self.running[i]
            n = self.block_manager.fit_tokens(seq, min(seq.num_uncomputed_tokens, budget))
            while n == 0 and self.running[-1] is not seq:
                self._preempt(self.running.pop())
                preempted = True
                n = self.block_manager.fit_tokens(seq, min(seq.num_uncomputed_tokens, budget))
            if n == 0:  # seq is the newest: it yields to the older ones
                self._preempt(self.running.pop())
                preempted = True
                break
            self.block_manager.allocate(seq, n)
            batch.seqs.append(seq)
            batch.num_tokens.append(n)
            budget -= n
            i += 1
        if not preempted:
            self._admit_waiting(budget, batch)
        return batch

    def _admit_waiting(self, budget: int, batch: ScheduledBatch) -> None:
        """Admit in arrival order; sibling choices whose leader's prompt is not computed yet are passed over."""
        deferred: list[Sequence] = []
        while self.waiting and budget > 0 and len(self.running) < self.max_num_seqs:
            if self.waiting[0].waits_for_leader:
                deferred.append(self.waiting.popleft())
                continue
            n = self._admit(self.waiting[0], budget, batch)
            if n == 0:
                break
            budget -= n
            self.running.append(self.waiting.popleft())
        self.waiting.extendleft(reversed(deferred))

    def _admit(self, seq: Sequence, budget: int, batch: ScheduledBatch) -> int:
        """Start ``seq`` if a slot and blocks for at least one token are free; return its token count."""
        manager = self.block_manager
        if not manager.has_free_slot():
            return 0
        snapshot = manager.match_prefix(seq)
        n = manager.fit_tokens(seq, min(seq.num_uncomputed_tokens, budget))
        if n == 0:
            manager.free(seq)  # gives back the prefix-cache hits taken above
            seq.num_cached_tokens = 0
            return 0
        manager.allocate(seq, n)
        batch.slot_inits.append((manager.acquire_slot(seq), snapshot))
        seq.status = SequenceStatus.RUNNING
        batch.seqs.append(seq)
        batch.num_tokens.append(n)
        return n

    def _preempt(self, seq: Sequence) -> None:
        self.block_manager.free(seq)
        seq.status = SequenceStatus.WAITING
        seq.num_cached_tokens = 0
        self.waiting.appendleft(seq)
        self.num_preemptions += 1

    def finish(self, seq: Sequence, reason: str) -> None:
        """End ``seq`` wherever it is and give back everything it holds."""
        if seq.status is SequenceStatus.RUNNING:
            self.running.remove(seq)
        elif seq.status is SequenceStatus.WAITING:
            self.waiting.remove(seq)
        self.block_manager.free(seq)
        seq.status = SequenceStatus.FINISHED
        seq.finish_reason = reason
