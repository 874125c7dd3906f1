"""Serve several LoRA adapters on one base model at once, chosen per request, without merging.

A hospital runs one copy of the 14B weights and one adapter per department (cardiology,
pediatrics, ...). ``AdapterBank`` keeps each adapter's A/B matrices beside the base model and
adds their deltas through forward hooks on the targeted Linear layers: the module tree and
parameter names stay untouched, and with no adapter active the hooks return at once.

Selection is per token, so one flat batch can mix departments. The caller says which adapter
each run of tokens uses (the engine: one run per sequence, ``counts`` = query lengths):

    bank = AdapterBank(model)
    bank.add("cardiology", "adapters/cardiology")
    with bank.activate(["cardiology", None, "pediatrics"], counts=[7, 1, 3]):
        hidden = model.model(input_ids_flat, ctx)

Token groups are computed once per ``activate``; every hooked layer then adds
``scale * (x[idx] @ A.T) @ B.T`` for each active adapter, the same delta the merge bakes into
the weights (``lora_weights``), so outputs equal the merged model's up to float rounding.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from .lora_weights import AdapterError, LoRAWeights, load_lora, target_linears


@dataclass(frozen=True)
class _Pair:
    a_t: torch.Tensor  # [in, rank]
    b_t: torch.Tensor  # [rank, out], scale folded in


class AdapterBank:
    """Named LoRA adapters over one model; not thread-safe (one thread drives the engine)."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self._adapters: dict[str, dict[str, _Pair]] = {}  # name -> module name -> pair
        self._hooks: dict[str, RemovableHandle] = {}
        self._groups: list[tuple[str, torch.Tensor]] | None = None  # (adapter, token indices) while active
        self._num_tokens = 0
        self._generation: dict[str, int] = {}  # name -> load number, for identity()
        self._loads = itertools.count(1)

    @property
    def names(self) -> list[str]:
        return list(self._adapters)

    def __contains__(self, name: object) -> bool:
        return name in self._adapters

    def add(self, name: str, adapter: str | Path | LoRAWeights) -> None:
        """Register an adapter (a peft directory or loaded weights) under ``name``."""
        if not name:
            raise AdapterError("an adapter needs a non-empty name")
        if name in self._adapters:
            raise AdapterError(f"adapter {name!r} is already loaded")
        lora = adapter if isinstance(adapter, LoRAWeights) else load_lora(adapter)
        linears = target_linears(self.model, lora)
        pairs = {}
        for module_name, layer in linears.items():
            module = lora.modules[module_name]
            weight = layer.weight
            pairs[module_name] = _Pair(
                a_t=module.a.to(weight.device, weight.dtype).t().contiguous(),
                b_t=(module.b.float() * module.scale).to(weight.device, weight.dtype).t().contiguous(),
            )
            if module_name not in self._hooks:
                self._hooks[module_name] = layer.register_forward_hook(self._hook(module_name))
        self._adapters[name] = pairs
        self._generation[name] = next(self._loads)

    def identity(self, name: str | None) -> bytes:
        """Bytes that change whenever the weights behind ``name`` may have: its name and load number.

        The prefix cache seeds its block hashes with this, so K/V computed under a removed adapter
        is never reused for a new adapter added under the same name. ``None`` (the base model) is ``b""``.
        """
        return b"" if name is None else f"{name}\x00{self._generation[name]}".encode()

    def remove(self, name: str) -> None:
        if name not in self._adapters:
            raise AdapterError(f"no adapter named {name!r}")
        del self._adapters[name]
        del self._generation[name]
        still_used = {m for pairs in self._adapters.values() for m in pairs}
        for module_name in [m for m in self._hooks if m not in still_used]:
            self._hooks.pop(module_name).remove()

    @contextmanager
    def activate(self, adapters: Sequence[str | None], counts: Sequence[int] | None = None) -> Iterator[None]:
        """Apply ``adapters[i]`` to the next ``counts[i]`` tokens of the flat batch (None = base model).

        Without ``counts`` each entry covers one token. Padded ``[B, T]`` batches flatten row by
        row, so ``counts=[T] * B`` selects one adapter per row.
        """
        counts = [1] * len(adapters) if counts is None else list(counts)
        if len(counts) != len(adapters):
            raise ValueError(f"{len(adapters)} adapters but {len(counts)} counts")
        unknown = sorted({a for a in adapters if a is not None and a not in self._adapters})
        if unknown:
            raise AdapterError(f"unknown adapter(s) {unknown}; loaded: {self.names or 'none'}")
        if self._groups is not None:
            raise RuntimeError("adapters are already active (activate() does not nest)")
        device = next(self.model.parameters()).device
        owner = torch.repeat_interleave(torch.arange(len(adapters)), torch.tensor(counts, dtype=torch.long))
        groups = []
        for name in dict.fromkeys(a for a in adapters if a is not None):
            segments = torch.tensor([a == name for a in adapters])
            groups.append((name, segments[owner].nonzero().squeeze(1).to(device)))
        self._groups, self._num_tokens = groups, int(sum(counts))
        try:
            yield
        finally:
            self._groups = None

    def _hook(self, module_name: str):  # noqa: ANN202 (a torch forward hook)
        def add_deltas(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor | None:
            if not self._groups:
                return None
            x = inputs[0].reshape(-1, inputs[0].shape[-1])
            if x.shape[0] != self._num_tokens:
                raise RuntimeError(f"{module_name}: {x.shape[0]} tokens in the batch but adapters were activated "
                                   f"for {self._num_tokens}")
            out = output.reshape(-1, output.shape[-1])
            for name, index in self._groups:
                pair = self._adapters[name].get(module_name)
                if pair is not None:
                    out = out.index_add(0, index, (x[index] @ pair.a_t) @ pair.b_t)
            return out.view(output.shape)

        return add_deltas
