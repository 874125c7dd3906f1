"""Batched next-token choice: log-probabilities, logit processors, grammar masks, greedy / sampled picks.

Order per step, every stage batched over the rows that need it:

1. log-probabilities of the rows that asked for them, from the model's raw logits (vLLM's
   default: before any processor), so they describe the model, not the sampling settings;
2. processors: repetition penalty (CTRL rule), OpenAI presence/frequency penalties over the
   output, ``logit_bias``, stop ids masked until ``min_tokens``;
3. grammar masks (structured output), or the grammar's forced closing id near the end of a budget;
4. greedy rows by argmax; sampled rows by temperature, top-k and top-p with inverse-CDF sampling
   from one uniform number per row. A seeded request draws its number from its own generator,
   so its tokens do not depend on which other requests share the batch.
"""

from __future__ import annotations

import torch

from .outputs import TokenLogprob
from .sequence import Sequence
from .structured_output import grammar_mask


def apply_repetition_penalty(logits: torch.Tensor, histories: list[list[int]], penalties: list[float]) -> torch.Tensor:
    """CTRL-style penalty on every token already in the prompt or output (rows of ``logits``, in place)."""
    rows = [i for i, p in enumerate(penalties) if p != 1.0]
    if not rows:
        return logits
    seen = _token_counts([histories[i] for i in rows], logits.shape[1], logits.device) > 0
    penalty = torch.tensor([penalties[i] for i in rows], dtype=logits.dtype, device=logits.device)[:, None]
    sub = logits[rows]
    penalized = torch.where(sub > 0, sub / penalty, sub * penalty)
    logits[rows] = torch.where(seen, penalized, sub)
    return logits


def apply_openai_penalties(logits: torch.Tensor, outputs: list[list[int]], presence: list[float],
                           frequency: list[float]) -> torch.Tensor:
    """OpenAI's rule, in place: ``logit -= frequency * count + presence * (count > 0)`` over each row's output."""
    rows = [i for i, (p, f) in enumerate(zip(presence, frequency, strict=True)) if p or f]
    if not rows:
        return logits
    counts = _token_counts([outputs[i] for i in rows], logits.shape[1], logits.device).to(logits.dtype)
    dev, dtype = logits.device, logits.dtype
    freq = torch.tensor([frequency[i] for i in rows], dtype=dtype, device=dev)[:, None]
    pres = torch.tensor([presence[i] for i in rows], dtype=dtype, device=dev)[:, None]
    logits[rows] = logits[rows] - freq * counts - pres * (counts > 0).to(dtype)
    return logits


def _token_counts(histories: list[list[int]], vocab: int, device: torch.device) -> torch.Tensor:
    """``[len(histories), vocab]`` occurrence counts (an extra padding column ``vocab`` is dropped)."""
    width = max(1, max(len(h) for h in histories))
    ids = torch.tensor([h + [vocab] * (width - len(h)) for h in histories], device=device)
    counts = torch.zeros(len(histories), vocab + 1, dtype=torch.int32, device=device)
    counts.scatter_add_(1, ids, torch.ones_like(ids, dtype=torch.int32))
    return counts[:, :vocab]


def token_logprobs(logprobs: torch.Tensor, chosen: list[int], num_top: list[int]) -> list[TokenLogprob]:
    """One ``TokenLogprob`` per row of a ``[rows, vocab]`` log-softmax: the chosen id's and the top ones."""
    rows = torch.arange(len(chosen), device=logprobs.device)
    picked = logprobs[rows, torch.tensor(chosen, device=logprobs.device)].tolist()
    k = max(num_top, default=0)
    top_vals, top_ids = logprobs.topk(k, dim=-1) if k else (logprobs[:, :0], logprobs[:, :0].long())
    top_vals, top_ids = top_vals.tolist(), top_ids.tolist()
    return [TokenLogprob(token, value, tuple(zip(top_ids[i][:n], top_vals[i][:n], strict=True)))
            for i, (token, value, n) in enumerate(zip(chosen, picked, num_top, strict=True))]


class Sampler:
    def __init__(self, device: torch.device, stop_token_ids: set[int]) -> None:
        self.device = device
        self.stop_token_ids = sorted(stop_token_ids)

    @torch.inference_mode()
    def __call__(self, logits: torch.Tensor, seqs: list[Sequence]) -> list[int]:
        logits = logits.float()
        wants = [i for i, s in enumerate(seqs) if s.params.logprobs is not None]
        raw = torch.log_softmax(logits[wants], dim=-1) if wants else None
        logits = self._process(logits, seqs)  # raw is already its own tensor (indexed copy)
        tokens = logits.argmax(dim=-1)
        sampled = [i for i, s in enumerate(seqs) if not s.params.greedy]
        if sampled:
            index = torch.tensor(sampled, device=logits.device)
            tokens[index] = self._sample(logits[index], [seqs[i] for i in sampled])
        chosen = tokens.tolist()
        for i, seq in enumerate(seqs):
            if seq.grammar is not None:
                forced = seq.grammar.forced_token(seq.budget_end - len(seq))
                chosen[i] = chosen[i] if forced is None else forced
        if raw is not None:
            for seq, entry in zip([seqs[i] for i in wants], token_logprobs(raw, [chosen[i] for i in wants],
                                                                            [seqs[i].params.logprobs for i in wants]),
                                  strict=True):
                assert seq.logprobs is not None
                seq.logprobs.append(entry)
        return chosen

    def _process(self, logits: torch.Tensor, seqs: list[Sequence]) -> torch.Tensor:
        """Every logit processor, in place on ``logits`` (fp32 ``[rows, vocab]``)."""
        params = [s.params for s in seqs]
        apply_repetition_penalty(logits, [s.token_ids for s in seqs], [p.repetition_penalty for p in params])
        if any(p.presence_penalty or p.frequency_penalty for p in params):  # outputs are copied: only when needed
            apply_openai_penalties(logits, [s.output_token_ids for s in seqs], [p.presence_penalty for p in params],
                                   [p.frequency_penalty for p in params])
        vocab = logits.shape[1]
        for i, p in enumerate(params):
            if p.logit_bias:
                ids = [t for t in p.logit_bias if t < vocab]
                logits[i, ids] += torch.tensor([p.logit_bias[t] for t in ids], device=logits.device)
        for i, seq in enumerate(seqs):
            # A grammar decides itself when the output may end, so min_tokens does not apply there.
            if seq.num_output_tokens < seq.params.min_tokens and seq.grammar is None:
                stops = set(seq.params.stop_token_ids) | (set() if seq.params.ignore_eos else set(self.stop_token_ids))
                logits[i, sorted(t for t in stops if t < vocab)] = float("-inf")
        constrained = [i for i, s in enumerate(seqs) if s.grammar is not None]
        if constrained:
            allowed = grammar_mask([seqs[i].grammar for i in constrained], vocab)  # type: ignore[misc]
            index = torch.tensor(constrained, device=logits.device)
            logits[index] = logits[index].masked_fill(~allowed.to(logits.device), float("-inf"))
        return logits

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
