"""Batched next-token choice: repetition penalty, greedy, temperature, top-k, top-p, seeds.

Sampled rows use inverse-CDF sampling over the probabilities sorted high to low, with one
uniform number per row. A seeded request draws its number from its own generator, so its
tokens do not depend on which other requests share the batch.
"""

from __future__ import annotations

import torch

from .sequence import Sequence


def apply_repetition_penalty(logits: torch.Tensor, histories: list[list[int]], penalties: list[float]) -> torch.Tensor:
    """CTRL-style penalty on every token already in the prompt or output (rows of ``logits``, in place)."""
    rows = [i for i, p in enumerate(penalties) if p != 1.0]
    if not rows:
        return logits
    vocab = logits.shape[1]
    width = max(len(histories[i]) for i in rows)
    # Pad with an extra column index ``vocab`` that is dropped after the scatter.
    ids = torch.tensor([histories[i] + [vocab] * (width - len(histories[i])) for i in rows], device=logits.device)
    seen = torch.zeros(len(rows), vocab + 1, dtype=torch.bool, device=logits.device)
    seen.scatter_(1, ids, True)
    penalty = torch.tensor([penalties[i] for i in rows], dtype=logits.dtype, device=logits.device)[:, None]
    sub = logits[rows]
    penalized = torch.where(sub > 0, sub / penalty, sub * penalty)
    logits[rows] = torch.where(seen[:, :vocab], penalized, sub)
    return logits


class Sampler:
    def __init__(self, device: torch.device) -> None:
        self.device = device

    @torch.inference_mode()
    def __call__(self, logits: torch.Tensor, seqs: list[Sequence]) -> list[int]:
        logits = apply_repetition_penalty(logits.float(), [s.token_ids for s in seqs],
                                          [s.params.repetition_penalty for s in seqs])
        tokens = logits.argmax(dim=-1)
        sampled = [i for i, s in enumerate(seqs) if not s.params.greedy]
        if sampled:
            index = torch.tensor(sampled, device=logits.device)
            tokens[index] = self._sample(logits[index], [seqs[i] for i in sampled])
        return tokens.tolist()

    def _sample(self, logits: torch.Tensor, seqs: list[Sequence]) -> torch.Tensor:
        dev = logits.device
        vocab = logits.shape[1]
        temperature = torch.tensor([s.params.temperature for s in seqs], device=dev)[:, None]
        probs = torch.softmax(logits / temperature, dim=-1)
        probs, order = probs.sort(dim=-1, descending=True, stable=True)
        top_k = torch.tensor([s.params.top_k if s.params.top_k > 0 else vocab for s in seqs], device=dev)
        top_p = torch.tensor([s.params.top_p for s in seqs], device=dev)
        # Both filters keep a prefix of the sorted tokens; the most likely token always stays.
        keep = torch.arange(vocab, device=dev)[None, :] < top_k[:, None]
        keep &= (probs.cumsum(dim=-1) - probs) < top_p[:, None]
        keep[:, 0] = True
        cdf = (probs * keep).cumsum(dim=-1)
        uniform = torch.cat([torch.rand(1, generator=s.generator) for s in seqs]).to(dev)
        pick = torch.searchsorted(cdf, (uniform * cdf[:, -1])[:, None], right=True)
        pick = torch.minimum(pick, keep.sum(dim=-1, keepdim=True) - 1)
        return order.gather(1, pick).squeeze(1)
