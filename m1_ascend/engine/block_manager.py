"""Two block pools (one per head geometry), conv-state slots and prefix caching by block hash.

Global layers keep every block of a sequence. Sliding-window layers drop a block as soon as
no future query can see any of its tokens (all of them are more than ``window - 1``
positions behind the next token), so a sequence holds at most ``window_blocks(window)``
sliding blocks after any step, also right after a long prefill.

Prefix caching: every full, computed block is registered under a hash of its tokens and of
the hash of the block before it, in both pools. A freed block keeps its contents and hash
until it is handed out again (least recently freed first), so later requests with the same
prefix reuse it. A hit needs the global blocks of the whole prefix, the sliding blocks its
window still reads, and the conv state at the prefix's last token, which the model runner
snapshots into per-global-block storage whenever a token closes a block.
"""

from __future__ import annotations

import hashlib
from array import array
from collections import OrderedDict

from .memory_plan import blocks_for_tokens
from .sequence import Sequence


def block_hash(parent: bytes, tokens: list[int]) -> bytes:
    """Content hash of a full block given its predecessor's hash (128-bit: collisions are not a concern)."""
    digest = hashlib.blake2b(parent, digest_size=16)
    digest.update(array("q", tokens).tobytes())
    return digest.digest()


class BlockPool:
    """A fixed set of block ids with reference counts and a hash index of reusable contents."""

    def __init__(self, num_blocks: int) -> None:
        self.num_blocks = num_blocks
        self.ref_counts = [0] * num_blocks
        self.hashes: list[bytes | None] = [None] * num_blocks
        self.cached: dict[bytes, int] = {}
        # Blocks nobody references, least recently freed first; they may still hold cached contents.
        self.free: OrderedDict[int, None] = OrderedDict.fromkeys(range(num_blocks))
        self.peak_used = 0  # high-water mark, incl. blocks a prefill chunk holds only during its step

    @property
    def num_free(self) -> int:
        return len(self.free)

    @property
    def num_used(self) -> int:
        return self.num_blocks - len(self.free)

    def allocate(self) -> int:
        block, _ = self.free.popitem(last=False)
        old = self.hashes[block]
        if old is not None:  # its cached contents are about to be overwritten
            del self.cached[old]
            self.hashes[block] = None
        self.ref_counts[block] = 1
        self.peak_used = max(self.peak_used, self.num_used)
        return block

    def share(self, block: int) -> None:
        if self.ref_counts[block] == 0:
            del self.free[block]
            self.peak_used = max(self.peak_used, self.num_used)
        self.ref_counts[block] += 1

    def release(self, block: int) -> None:
        if self.ref_counts[block] <= 0:
            raise RuntimeError(f"block {block} released more often than it was taken")
        self.ref_counts[block] -= 1
        if self.ref_counts[block] == 0:
            self.free[block] = None

    def lookup(self, digest: bytes) -> int | None:
        return self.cached.get(digest)

    def register(self, block: int, digest: bytes) -> None:
        """Offer a computed block for reuse; the first block registered under a hash keeps it."""
        if self.hashes[block] is None and digest not in self.cached:
            self.cached[digest] = block
            self.hashes[block] = digest


class BlockManager:
    """Hands out blocks in both pools and conv-state slots, and takes them all back."""

    def __init__(self, num_global_blocks: int, num_sliding_blocks: int, num_slots: int, block_size: int,
                 window: int, enable_prefix_caching: bool) -> None:
        self.block_size = block_size
        self.window = window
        self.enable_prefix_caching = enable_prefix_caching
        self.global_pool = BlockPool(num_global_blocks)
        self.sliding_pool = BlockPool(num_sliding_blocks)
        self.num_slots = num_slots
        self.free_slots = list(range(num_slots - 1, -1, -1))

    # -- window arithmetic -------------------------------------------------------------------
    def first_window_block(self, num_computed: int) -> int:
        """Logical index of the oldest block the next query (at position ``num_computed``) reads."""
        return max(0, num_computed - self.window + 1) // self.block_size

    # -- allocation --------------------------------------------------------------------------
    def fit_tokens(self, seq: Sequence, num_tokens: int) -> int:
        """How many of the next ``num_tokens`` tokens of ``seq`` the free blocks can take (0..num_tokens)."""
        held = len(seq.global_blocks)  # both tables have the same logical length
        room = min(self.global_pool.num_free, self.sliding_pool.num_free)
        return max(0, min(num_tokens, (held + room) * self.block_size - seq.num_computed_tokens))

    def allocate(self, seq: Sequence, num_tokens: int) -> None:
        """Give ``seq`` the blocks for its next ``num_tokens`` tokens (call ``fit_tokens`` first)."""
        needed = blocks_for_tokens(seq.num_computed_tokens + num_tokens, self.block_size) - len(seq.global_blocks)
        for _ in range(needed):
            seq.global_blocks.append(self.global_pool.allocate())
            seq.sliding_blocks.append(self.sliding_pool.allocate())

    def has_free_slot(self) -> bool:
        return bool(self.free_slots)

    def acquire_slot(self, seq: Sequence) -> int:
        seq.slot = self.free_slots.pop()
        return seq.slot

    def commit(self, seq: Sequence, num_computed_before: int) -> None:
        """After a step: publish newly completed blocks for reuse, drop blocks that left the window."""
        if self.enable_prefix_caching:
            hashes = self._hashes(seq, seq.num_computed_tokens // self.block_size)
            for i in range(num_computed_before // self.block_size, len(hashes)):
                self.global_pool.register(seq.global_blocks[i], hashes[i])
                block = seq.sliding_blocks[i]
                if block is not None:
                    self.sliding_pool.register(block, hashes[i])
        self._trim_window(seq)

    def _trim_window(self, seq: Sequence) -> None:
        i = self.first_window_block(seq.num_computed_tokens) - 1
        while i >= 0 and seq.sliding_blocks[i] is not None:
            self.sliding_pool.release(seq.sliding_blocks[i])
            seq.sliding_blocks[i] = None
            i -= 1

    def free(self, seq: Sequence) -> None:
        """Return every block and the slot of ``seq``; its progress restarts from zero."""
        for block in reversed(seq.global_blocks):  # tail blocks are the least likely to be shared
            self.global_pool.release(block)
        for block in reversed(seq.sliding_blocks):
            if block is not None:
                self.sliding_pool.release(block)
        seq.global_blocks.clear()
        seq.sliding_blocks.clear()
        seq.num_computed_tokens = 0
        if seq.slot is not None:
            self.free_slots.append(seq.slot)
            seq.slot = None

    # -- prefix caching ----------------------------------------------------------------------
    def _hashes(self, seq: Sequence, num_blocks: int) -> list[bytes]:
        bs = self.block_size
        hashes = seq.block_hashes
        while len(hashes) < num_blocks:
            i = len(hashes)
            # The first block's parent is the adapter's identity (name and load generation): K/V computed
            # under another adapter, or under an earlier adapter of the same name, are never reused.
            parent = hashes[-1] if hashes else seq.cache_salt
            hashes.append(block_hash(parent, seq.token_ids[i * bs:(i + 1) * bs]))
        return hashes[:num_blocks]

    def match_prefix(self, seq: Sequence) -> int | None:
        """Attach the longest cached prefix to a fresh ``seq``; return the global block holding its conv snapshot.

        At least one token is always left to compute, since the last one must produce logits. A request
        for prompt log-probabilities computes its whole prompt (it needs the logits of every position).
        """
        if not self.enable_prefix_caching or seq.global_blocks or seq.params.prompt_logprobs is not None:
            return None
        hashes = self._hashes(seq, (len(seq) - 1) // self.block_size)
        global_hits: list[int] = []
        for digest in hashes:
            block = self.global_pool.lookup(digest)
            if block is None:
                break
            global_hits.append(block)
        for num_blocks in range(len(global_hits), 0, -1):
            first = self.first_window_block(num_blocks * self.block_size)
            sliding_hits = [self.sliding_pool.lookup(hashes[i]) for i in range(first, num_blocks)]
            if all(block is not None for block in sliding_hits):
                break
        else:
            return None
        for block in global_hits[:num_blocks]:
            self.global_pool.share(block)
        seq.global_blocks = global_hits[:num_blocks]
        seq.sliding_blocks = [None] * first
        for block in sliding_hits:
            assert block is not None
            self.sliding_pool.share(block)
            seq.sliding_blocks.append(block)
        seq.num_computed_tokens = seq.num_cached_tokens = num_blocks * self.block_size
        return global_hits[num_blocks - 1]

    # -- accounting --------------------------------------------------------------------------
    def stats(self) -> dict[str, int]:
        g, s = self.global_pool, self.sliding_pool
        return {
            "kv_blocks_used": g.num_used + s.num_used,
            "kv_blocks_free": g.num_free + s.num_free,
            "kv_blocks_total": g.num_blocks + s.num_blocks,
            "global_blocks_used": g.num_used,
            "global_blocks_peak": g.peak_used,
            "global_blocks_total": g.num_blocks,
            "sliding_blocks_used": s.num_used,
            "sliding_blocks_peak": s.peak_used,
            "sliding_blocks_total": s.num_blocks,
            "conv_slots_used": self.num_slots - len(self.free_slots),
            "conv_slots_total": self.num_slots,
            "prefix_cached_blocks": len(g.cached),
        }

    def all_free(self) -> bool:
        """True when no block and no slot is held (the leak check)."""
        return (self.global_pool.num_free == self.global_pool.num_blocks
                and self.sliding_pool.num_free == self.sliding_pool.num_blocks
                and len(self.free_slots) == self.num_slots)
