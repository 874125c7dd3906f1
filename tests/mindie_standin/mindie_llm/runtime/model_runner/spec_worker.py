"""Stand-in for ``mindie_llm.runtime.model_runner.spec_worker`` (MindIE-LLM 8b4871a, model_runner/spec_worker.py:678-721).

Only the class decorator that makes ``ModelRunnerExp`` a factory, and its selector. The MTP worker
proxies (``MtpWorker``, ``MtpWorkerExp``) are not modelled.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from mindie_llm.utils.env import ENV


def auto_speculative_method_router(selector_fn: Callable[[dict[str, Any]], Any]) -> Callable[[type], Callable[..., Any]]:
    """Replace a class by a factory that asks ``selector_fn(kwargs)`` for a proxy class first.

    The factory carries the class's name and docstring (``functools.wraps(..., updated=())``,
    ``__wrapped__`` = the class) and copies of its non-callable, non-dunder class attributes.
    """

    def decorator(original_class: type) -> Callable[..., Any]:
        @functools.wraps(original_class, updated=())
        def factory(*args: Any, **kwargs: Any) -> Any:
            proxy_class = selector_fn(kwargs)
            if proxy_class:
                return proxy_class(original_class, *args, **kwargs)
            return original_class(*args, **kwargs)

        for name in dir(original_class):
            if not name.startswith("__") and not callable(getattr(original_class, name)):
                setattr(factory, name, getattr(original_class, name))
        return factory

    return decorator


def speculative_worker_selector(kwargs: dict[str, Any]) -> Any:
    """None (the plain runner) unless speculative tokens are on; ``num_speculative_tokens`` must be an int."""
    num_speculative_tokens = kwargs.get("num_speculative_tokens")
    if num_speculative_tokens > 0:
        exp = "MtpWorkerExp" if ENV.model_runner_exp else "MtpWorker"
        raise NotImplementedError(f"not modelled: speculative decoding ({exp})")
    return None
