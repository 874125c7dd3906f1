"""Everything the server does before it can answer: find the checkpoint, load it, name it.

``load_model`` is the one place for startup steps, in order, so additions (e.g. checking the
weights against a SHA256SUMS file before loading them) slot in between the existing steps. It runs
in a worker thread while ``/health`` answers 503.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..weights import verify_or_refuse
from .models import ServedModel
from .settings import ServerSettings

logger = logging.getLogger(__name__)

DEMO_MODEL_NAME = "baichuan-m1-demo"


@dataclass
class LoadedModel:
    engine: Any  # m1_ascend.engine.llm_engine.LLMEngine
    served: ServedModel
    directory: Path
    adapters: list[ServedModel] = field(default_factory=list)  # one model id per LoRA adapter


def resolve_model_dir(settings: ServerSettings) -> Path:
    """The checkpoint to serve: ``settings.model``, else the demo checkpoint (built on first use)."""
    if settings.model is not None:
        return Path(settings.model).expanduser().resolve()
    from ..demo import ensure_demo_checkpoint

    logger.info("no --model given: serving the embedded demo checkpoint (building it on first use)")
    return ensure_demo_checkpoint()


def load_model(settings: ServerSettings) -> LoadedModel:
    started = time.perf_counter()
    directory = resolve_model_dir(settings)
    verify_or_refuse(directory, allow_mismatch=settings.allow_weight_mismatch)

    from ..engine.llm_engine import LLMEngine

    engine = LLMEngine(model=str(directory), device=settings.device, dtype=settings.dtype,
                       max_num_seqs=settings.max_num_seqs, max_num_batched_tokens=settings.max_num_batched_tokens,
                       block_size=settings.block_size, kv_cache_memory=settings.kv_cache_memory,
                       enable_prefix_caching=settings.enable_prefix_caching, adapters=settings.lora_adapters,
                       enforce_eager=settings.enforce_eager)
    name = settings.served_model_name or (DEMO_MODEL_NAME if settings.model is None else directory.name)
    if name in settings.lora_adapters:
        raise ValueError(f"lora_adapters: adapter name {name!r} is the base model's id; rename the adapter")
    served = ServedModel(id=name, created=int(time.time()), max_model_len=engine.max_model_len)
    adapters = [ServedModel(id=a, created=served.created, max_model_len=engine.max_model_len, adapter=a)
                for a in settings.lora_adapters]
    stats = engine.stats()
    logger.info("model %r loaded from %s on %s in %.1f s: max_model_len %d, %d KV blocks", name, directory,
                engine.device_name, time.perf_counter() - started, engine.max_model_len, stats["kv_blocks_total"])
    return LoadedModel(engine=engine, served=served, directory=directory, adapters=adapters)
