"""Which model ids this server answers to, and what each one maps to.

Requests name a model; ``ModelRegistry.resolve`` is the single place that turns that name into
something servable (404 otherwise). Per-request LoRA adapters plug in here: register one
``ServedModel`` per adapter and teach ``resolve``'s callers to pass it to the engine.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ApiError


@dataclass(frozen=True)
class ServedModel:
    id: str
    created: int
    max_model_len: int
    adapter: str | None = None  # the engine's LoRA adapter for this id; None = the base model


class ModelRegistry:
    def __init__(self, models: list[ServedModel]) -> None:
        self._models = {m.id: m for m in models}

    def list(self) -> list[ServedModel]:
        return list(self._models.values())

    def resolve(self, name: str) -> ServedModel:
        model = self._models.get(name)
        if model is None:
            served = ", ".join(repr(m) for m in self._models)
            raise ApiError(404, f"The model {name!r} does not exist; this server serves {served} (GET /v1/models).",
                           param="model", code="model_not_found")
        return model
