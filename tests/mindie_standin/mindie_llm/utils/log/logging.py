"""Stand-in for ``mindie_llm.utils.log.logging`` (MindIE-LLM 8b4871a, utils/log/logging.py).

MindIE's ``logger`` is its own component logger (``get_logger(Component.LLM)``, file handlers,
rotation); here it is the standard ``logging`` logger named ``mindie_llm``, so tests read what
MindIE logs (e.g. swallowed graph-update failures) with ``caplog`` or a handler.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

_MAX_MSG_LEN = 4096  # logging.py:15
_SPECIAL_CHARS = ["\n", "\r", "\f", "\t", "\v", "\b", "//", "\\", "&", "\x7f"]  # logging.py:16-32 (distinct values)

logger = logging.getLogger("mindie_llm")


def print_log(rank_id: int, logger_fn: Callable[..., Any], msg: Any, need_filter: bool = False) -> None:
    """Only rank 0 logs (logging.py:35-40)."""
    if rank_id != 0:
        return
    if need_filter:
        msg = message_filter(str(msg))
    logger_fn(msg, stacklevel=2)


def message_filter(msg: str) -> str:
    """Cut at 4096 characters, blank out control characters, squeeze long runs of spaces (logging.py:43-53)."""
    if len(msg) > _MAX_MSG_LEN:
        msg = msg[:_MAX_MSG_LEN] + "..."
    for char in _SPECIAL_CHARS:
        msg = msg.replace(char, " ")
    return re.sub(r" {5,}", "    ", msg)
