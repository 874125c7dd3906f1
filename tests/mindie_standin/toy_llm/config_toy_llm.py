"""``ToyLlmConfig``: MindIE's HuggingFaceConfig; the flags below ride along as extra config.json keys.

- ``inert_pad_rows`` (default true): in decode, rows with ``seq_lens == 0`` (MindIE's padding) write
  no K/V. False writes through MindIE's padded ``slot_mapping`` as is, stale tail included.
- ``set_config`` (default true): set ``self.config``, which MindIE's weight loader reads.
- ``read_past_end`` (default false): eager decode attends one position beyond each sequence.
"""

from __future__ import annotations

from typing import Any

from mindie_llm.runtime.config.huggingface_config import HuggingFaceConfig


class ToyLlmConfig(HuggingFaceConfig):
    def __init__(self, **kwargs: Any) -> None:
        """Needed: transformers 5 turns every config subclass into a dataclass, and one without its own
        ``__init__`` gets a generated one that skips HuggingFaceConfig's (no ``rope_scaling`` then)."""
        super().__init__(**kwargs)
