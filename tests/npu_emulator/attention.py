"""``npu_fused_infer_attention_score`` (FIA) and ``npu_fusion_attention`` in plain torch.

Written from the documented semantics (shared/spec/ascend-npu-ops.md §1.1-1.3, §1.11), not
from our backend, so the backend is checked against the documents rather than against itself:

- ``atten_mask`` True/1 means *masked out*; sparse modes 2/3/4 take only the 2048x2048
  upper-triangular template and the kernel derives the real mask from the mode;
- mode 2 is causal from the top-left, mode 3 from the bottom-right, mode 4 a band
  ``p - pre <= j <= p + next`` around the bottom-right diagonal (``pre`` excludes the diagonal);
- ``scale`` defaults to 1.0; Q_S = 1 outside TND ignores sparse_mode/pre/next;
- TND lengths are cumulative; with a block table the KV lengths are per request (the form
  vllm-ascend uses in production); non-TND lengths are per batch (a 1-element list broadcasts);
- paged KV: ``[num_blocks, block_size, KV_N*D]`` (any layout) or ``[num_blocks, KV_N, block_size, D]``
  (BNSD/TND), int32 block tables, block-size rules for Q_S > 1 and Q_S = 1.
"""

from __future__ import annotations

from itertools import pairwise

import torch

from ._checks import contiguous, int_list, no_extras, require

INT_MAX = 2147483647
TEMPLATE = 2048
MASK_DTYPES = (torch.bool, torch.int8, torch.uint8)

FIA = "npu_fused_infer_attention_score"


def template_mask(device: torch.device | str = "cpu") -> torch.Tensor:
    """The documented 2048x2048 template: 1 above the diagonal (masked), 0 on and below it."""
    return torch.triu(torch.ones(TEMPLATE, TEMPLATE, dtype=torch.bool, device=device), diagonal=1)


def _check_template(op: str, mask: torch.Tensor | None, mode: int) -> None:
    require(mask is not None, op, f"sparse_mode={mode} needs the 2048x2048 atten_mask template")
    assert mask is not None
    require(mask.dtype in MASK_DTYPES, op, f"atten_mask dtype must be bool/int8/uint8, got {mask.dtype}")
    require(mask.shape[-2:] == (TEMPLATE, TEMPLATE) and all(d == 1 for d in mask.shape[:-2]) and mask.dim() <= 4,
            op, f"sparse_mode={mode} takes a (2048, 2048) template, got {tuple(mask.shape)}")
    require(torch.equal(mask.reshape(TEMPLATE, TEMPLATE).bool().cpu(), template_mask()), op,
            "the 2048x2048 template must be 1 (masked) strictly above the diagonal")


def _visible(mode: int, q_len: int, kv_len: int, pre: int, nxt: int, has_mask: bool,
             ignore_sparse: bool, device: torch.device) -> torch.Tensor:
    """``[q_len, kv_len]`` bool: which keys the sparse mode lets each query row see."""
    i = torch.arange(q_len, device=device)[:, None]
    j = torch.arange(kv_len, device=device)[None, :]
    full = torch.ones(q_len, kv_len, dtype=torch.bool, device=device)
    if ignore_sparse or mode == 1 or (mode == 0 and not has_mask):
        return full
    if mode == 0:
        return (j >= i - pre) & (j <= i + nxt)
    if mode == 2:
        return j <= i
    if mode == 3:
        return j <= i + (kv_len - q_len)
    position = i + (kv_len - q_len)  # mode 4: band around the bottom-right diagonal
    return (j >= position - pre) & (j <= position + nxt)


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, visible: torch.Tensor, scale: float,
            bias: torch.Tensor | None) -> torch.Tensor:
    """fp32 softmax attention for one sequence; q ``[Sq, N, D]``, k/v ``[Skv, KV_N, D]``; masked rows give 0."""
    group = q.shape[1] // k.shape[1]
    k = k.float().repeat_interleave(group, dim=1)
    v = v.float().repeat_interleave(group, dim=1)
    scores = torch.einsum("qnd,knd->nqk", q.float(), k) * scale
    if bias is not None:
        scores = scores + bias.float()
    scores = scores.masked_fill(~visible[None], float("-inf"))
    any_visible = visible.any(dim=-1)[None, :, None]
    probs = torch.softmax(torch.where(any_visible, scores, torch.zeros_like(scores)), dim=-1)
    probs = torch.where(any_visible, probs, torch.zeros_like(probs))
    return torch.einsum("nqk,knd->qnd", probs, v)


def _batch_lengths(op: str, name: str, values: list[int] | None, batch: int, limit: int) -> list[int]:
    """Non-TND per-batch lengths: 1 entry broadcasts, >= batch entries use the first ``batch``."""
    if values is None:
        return [limit] * batch
    require(len(values) == 1 or len(values) >= batch, op,
            f"{name} has {len(values)} entries; it should be >= batch size ({batch}) or 1")
    lengths = values * batch if len(values) == 1 else values[:batch]
    require(all(0 <= n <= limit for n in lengths), op, f"{name} {lengths} must lie in [0, {limit}]")
    return lengths


def _cumulative(op: str, name: str, values: list[int] | None, total: int | None) -> list[int]:
    """TND lengths: cumulative ends, non-decreasing, at most 4096 entries."""
    require(values is not None, op, f"{name} is required with input_layout TND")
    assert values is not None
    require(0 < len(values) <= 4096, op, f"{name} needs 1..4096 entries, got {len(values)}")
    lengths = [b - a for a, b in pairwise([0, *values])]
    require(min(lengths) >= 0, op, f"{name} must be cumulative (non-decreasing): {values}")
    require(total is None or values[-1] == total, op, f"{name} must end at the token count {total}, got {values[-1]}")
    return lengths


def _split_queries(op: str, query: torch.Tensor, layout: str, num_heads: int,
                   q_lens: list[int] | None) -> tuple[list[torch.Tensor], int, int]:
    """Queries per batch as ``[q_len, N, D]`` plus the tensor's Q_S (TND: the longest request)."""
    if layout == "TND":
        require(query.dim() == 3, op, f"TND query must be 3-D [T, N, D], got {tuple(query.shape)}")
        lengths = _cumulative(op, "actual_seq_lengths", q_lens, query.shape[0])
        return list(query.split(lengths)), max(lengths), len(lengths)
    if layout == "BSH":
        require(query.dim() == 3 and query.shape[2] % num_heads == 0, op, f"BSH query must be [B, S, N*D], got "
                f"{tuple(query.shape)} with num_heads={num_heads}")
        query = query.view(query.shape[0], query.shape[1], num_heads, -1)
    elif layout == "BNSD":
        require(query.dim() == 4, op, "BNSD query must be 4-D")
        query = query.transpose(1, 2)
    else:
        require(query.dim() == 4, op, "BSND query must be 4-D")
    batch, q_s = query.shape[0], query.shape[1]
    lengths = _batch_lengths(op, "actual_seq_lengths", q_lens, batch, q_s)
    return [query[b, :lengths[b]] for b in range(batch)], q_s, batch


def _paged_kv(op: str, key: torch.Tensor, value: torch.Tensor, block_table: torch.Tensor, block_size: int,
              kv_lens: list[int] | None, batch: int, n_kv: int, head_dim: int, layout: str,
              q_s: int) -> tuple[list[torch.Tensor], list[torch.Tensor], int]:
    """Gather each request's keys through its block table; returns them and the table's token span."""
    require(block_table.dtype == torch.int32 and block_table.dim() == 2, op, "block_table must be a 2-D int32 tensor")
    require(block_table.shape[0] == batch, op, f"block_table has {block_table.shape[0]} rows for batch {batch}")
    require(key.shape == value.shape, op, "key and value caches must have the same shape")
    if key.dim() == 3:
        require(key.shape[2] == n_kv * head_dim, op, f"cache hidden size {key.shape[2]} != KV_N*D {n_kv * head_dim}")
        require(key.shape[2] < 65535, op, "(blocks, block_size, H) caches need H = KV_N*D < 65535")
        cache_block = key.shape[1]
        k_flat = key.view(key.shape[0], cache_block, n_kv, head_dim)
        v_flat = value.view(key.shape[0], cache_block, n_kv, head_dim)
    else:
        require(key.dim() == 4 and layout in ("BNSD", "TND"), op,
                "(blocks, KV_N, block_size, D) caches are only accepted with BNSD or TND queries")
        require(key.shape[1] == n_kv and key.shape[3] == head_dim, op, "cache heads/head_dim do not match")
        cache_block = key.shape[2]
        k_flat, v_flat = key.transpose(1, 2), value.transpose(1, 2)
    require(block_size == cache_block, op, f"block_size={block_size} but the cache holds {cache_block}-token blocks")
    if q_s > 1:
        require(128 <= block_size <= 512 and block_size % 128 == 0, op,
                f"paged attention with Q_S > 1 needs block_size in [128, 512], a multiple of 128; got {block_size}")
    else:
        require(0 < block_size <= 512 and block_size % 16 == 0, op,
                f"paged attention with Q_S = 1 needs block_size <= 512, 16-aligned; got {block_size}")
    require(kv_lens is not None, op, "actual_seq_lengths_kv is mandatory with a block_table")
    assert kv_lens is not None
    if layout == "TND":
        require(len(kv_lens) == batch, op, "TND paged attention takes one KV length per request")
    lengths = _batch_lengths(op, "actual_seq_lengths_kv", kv_lens, batch, block_table.shape[1] * block_size)
    needed = [-(-n // block_size) for n in lengths]
    num_blocks = key.shape[0]
    # No "cache blocks >= blocks the batch uses" rule: requests share blocks (prefix caching), and MindIE's
    # own warm-up runs FIA over a one-block pool with all-zero tables (generator.py:498-516, request.py:188).
    keys, values = [], []
    for b, n in enumerate(lengths):
        ids = block_table[b, :needed[b]].long()
        require(bool(((ids >= 0) & (ids < num_blocks)).all()), op, f"block_table row {b} reads block ids outside the cache")
        keys.append(k_flat[ids].reshape(-1, n_kv, head_dim)[:n])
        values.append(v_flat[ids].reshape(-1, n_kv, head_dim)[:n])
    return keys, values, block_table.shape[1] * block_size


def _dense_kv(op: str, key: torch.Tensor, value: torch.Tensor, layout: str, n_kv: int, kv_lens: list[int] | None,
              batch: int) -> tuple[list[torch.Tensor], list[torch.Tensor], int]:
    require(key.shape == value.shape, op, "key and value must have the same shape")
    if layout == "TND":
        lengths = _cumulative(op, "actual_seq_lengths_kv", kv_lens, key.shape[0])
        require(len(lengths) == batch, op, "TND needs as many KV lengths as query lengths")
        return list(key.split(lengths)), list(value.split(lengths)), max(lengths)
    if layout == "BSH":
        key, value = key.view(*key.shape[:2], n_kv, -1), value.view(*value.shape[:2], n_kv, -1)
    elif layout == "BNSD":
        key, value = key.transpose(1, 2), value.transpose(1, 2)
    require(key.shape[0] == batch, op, "key batch differs from query batch")
    lengths = _batch_lengths(op, "actual_seq_lengths_kv", kv_lens, batch, key.shape[1])
    return [key[b, :n] for b, n in enumerate(lengths)], [value[b, :n] for b, n in enumerate(lengths)], key.shape[1]


def _explicit_mask(op: str, mask: torch.Tensor, batch: int, q_s: int, kv_span: int) -> torch.Tensor:
    """A full mask (sparse 0/1, or any mask with Q_S = 1) as ``[B, Q_S, KV]`` bool."""
    require(mask.dtype in MASK_DTYPES, op, f"atten_mask dtype must be bool/int8/uint8, got {mask.dtype}")
    shape = tuple(mask.shape)
    if q_s == 1:
        ok = shape[0] == batch and mask.dim() in (2, 3, 4) and all(d == 1 for d in shape[1:-1])
        require(ok, op, f"with Q_S = 1 the mask must be (B, KV_S), (B, 1, KV_S) or (B, 1, 1, KV_S); got {shape}")
    else:
        lead = shape[:-2]
        ok = mask.dim() in (2, 3, 4) and shape[-2] == q_s and (lead in ((), (1,), (batch,), (1, 1), (batch, 1)))
        require(ok, op, f"a full mask must be (Q_S, KV_S), (B|1, Q_S, KV_S) or (B|1, 1, Q_S, KV_S); got {shape}")
    require(shape[-1] >= kv_span, op, f"mask KV_S {shape[-1]} is shorter than the keys it covers ({kv_span})")
    full = mask.bool().reshape(-1, mask.shape[-2] if q_s > 1 else 1, mask.shape[-1])
    return full.expand(batch, -1, -1)


def fia_tiling_checks(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, *,
                      actual_seq_lengths: object = None, actual_seq_lengths_kv: object = None,
                      block_table: torch.Tensor | None = None, block_size: int = 0, input_layout: str = "BSH",
                      **_: object) -> None:
    """FIA's host-side checks: from shapes and host lists only, so a graph update can run them.

    On a device an update re-launches the recorded operator with the new host values
    (``torch_npu/npu/graphs.py:585``, ``record.op_cache_entry(*record.args, **record.kwargs)`` on the
    update stream), so its host-side tiling (and its errors) runs there, while the data in the
    captured tensors is only read when the graph replays.
    """
    q_lens = int_list(FIA, "actual_seq_lengths", actual_seq_lengths)
    kv_lens = int_list(FIA, "actual_seq_lengths_kv", actual_seq_lengths_kv)
    if input_layout == "TND":
        batch = len(_cumulative(FIA, "actual_seq_lengths", q_lens, query.shape[0]))
    else:
        batch = query.shape[0]
    if block_table is not None:
        require(kv_lens is not None, FIA, "actual_seq_lengths_kv is mandatory with a block_table")
        require(block_table.shape[0] == batch, FIA, f"block_table has {block_table.shape[0]} rows for batch {batch}")
        _batch_lengths(FIA, "actual_seq_lengths_kv", kv_lens, batch, block_table.shape[1] * block_size)


def npu_fused_infer_attention_score(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, *, pse_shift: torch.Tensor | None = None,
    atten_mask: torch.Tensor | None = None, actual_seq_lengths: object = None, actual_seq_lengths_kv: object = None,
    block_table: torch.Tensor | None = None, num_heads: int = 1, scale: float = 1.0, pre_tokens: int = INT_MAX,
    next_tokens: int = INT_MAX, input_layout: str = "BSH", num_key_value_heads: int = 0, sparse_mode: int = 0,
    inner_precise: int = 0, block_size: int = 0, softmax_lse_flag: bool = False, **extras: object,
) -> tuple[torch.Tensor, torch.Tensor]:
    no_extras(FIA, {**extras, "softmax_lse_flag": softmax_lse_flag})
    q_lens = int_list(FIA, "actual_seq_lengths", actual_seq_lengths)
    kv_lens = int_list(FIA, "actual_seq_lengths_kv", actual_seq_lengths_kv)
    require(query.dtype in (torch.float16, torch.bfloat16), FIA, f"query must be fp16/bf16, got {query.dtype}")
    require(key.dtype == value.dtype == query.dtype, FIA, "key/value must have the query's dtype (no quantisation here)")
    contiguous(FIA, query=query, key=key, value=value, atten_mask=atten_mask, pse_shift=pse_shift)
    if input_layout not in ("BSH", "BSND", "BNSD", "TND"):
        raise NotImplementedError(f"{FIA}: the emulator models BSH/BSND/BNSD/TND, not {input_layout}")
    require(sparse_mode in (0, 1, 2, 3, 4), FIA, f"sparse_mode {sparse_mode} is not supported (0-4 only)")
    n_kv = num_key_value_heads or num_heads
    queries, q_s, batch = _split_queries(FIA, query, input_layout, num_heads, q_lens)
    n_heads, head_dim = queries[0].shape[1], queries[0].shape[2]
    require(n_heads == num_heads, FIA, f"num_heads={num_heads} but the query has {n_heads} heads")
    require(n_heads <= 256 and n_kv <= 256 and n_heads % n_kv == 0 and n_heads // n_kv <= 64, FIA,
            f"heads {n_heads}/{n_kv}: N <= 256 and an integer GQA ratio <= 64 are required")
    require(head_dim <= 512 and (head_dim * query.element_size()) % 16 == 0, FIA,
            f"head_dim {head_dim} must be <= 512 and 16-byte aligned")
    is_tnd = input_layout == "TND"
    if is_tnd:
        require(head_dim in (128, 192), FIA, f"TND layout accepts head_dim 128 or 192 only, got {head_dim}")
        require(pse_shift is None, FIA, "TND does not support pse_shift")
    if block_table is not None:
        keys, values, kv_span = _paged_kv(FIA, key, value, block_table, block_size, kv_lens, batch, n_kv, head_dim,
                                          input_layout, q_s)
    else:
        keys, values, kv_span = _dense_kv(FIA, key, value, input_layout, n_kv, kv_lens, batch)
    ignore_sparse = not is_tnd and q_s == 1
    if not ignore_sparse and sparse_mode in (2, 3, 4):
        _check_template(FIA, atten_mask, sparse_mode)
    explicit = None
    if atten_mask is not None and (ignore_sparse or sparse_mode in (0, 1)):
        explicit = _explicit_mask(FIA, atten_mask, batch, q_s, kv_span)
    require(sparse_mode != 1 or explicit is not None or ignore_sparse, FIA, "sparse_mode=1 needs a full atten_mask")
    if pse_shift is not None:
        require(pse_shift.dtype == query.dtype and pse_shift.dim() == 4, FIA, "pse_shift must be 4-D in the query dtype")
        require(pse_shift.shape[0] in (1, batch) and pse_shift.shape[1] == n_heads and pse_shift.shape[2] >= q_s
                and pse_shift.shape[3] >= kv_span, FIA,
                f"pse_shift must be (B|1, N, Q_S, KV_S) covering the keys, got {tuple(pse_shift.shape)}")

    outputs = []
    for b in range(batch):
        q_len, kv_len = queries[b].shape[0], keys[b].shape[0]
        visible = _visible(sparse_mode, q_len, kv_len, pre_tokens, next_tokens, explicit is not None,
                           ignore_sparse, query.device)
        if explicit is not None:
            visible = visible & ~explicit[b, :q_len, :kv_len]
        bias = None if pse_shift is None else pse_shift[b if pse_shift.shape[0] > 1 else 0, :, :q_len, :kv_len]
        outputs.append(_attend(queries[b], keys[b], values[b], visible, scale, bias).to(query.dtype))
    # softmax_lse_flag off (the only mode emulated): an empty lse, as the meta function returns.
    return _assemble(outputs, query, input_layout, q_s), torch.zeros(0, dtype=torch.float32, device=query.device)


def _assemble(outputs: list[torch.Tensor], query: torch.Tensor, layout: str, q_s: int) -> torch.Tensor:
    """Put per-batch outputs back in the query's layout; padded rows stay zero."""
    if layout == "TND":
        return torch.cat(outputs, dim=0)
    batch, n_heads, head_dim = len(outputs), outputs[0].shape[1], outputs[0].shape[2]
    out = query.new_zeros(batch, q_s, n_heads, head_dim)
    for b, rows in enumerate(outputs):
        out[b, :rows.shape[0]] = rows
    if layout == "BSH":
        return out.reshape(batch, q_s, n_heads * head_dim)
    if layout == "BNSD":
        return out.transpose(1, 2).contiguous()
    return out


FUSION = "npu_fusion_attention"


def npu_fusion_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, head_num: int, input_layout: str,
    pse: torch.Tensor | None = None, padding_mask: torch.Tensor | None = None, atten_mask: torch.Tensor | None = None,
    scale: float = 1.0, keep_prob: float = 1.0, pre_tockens: int = INT_MAX, next_tockens: int = INT_MAX,
    inner_precise: int = 0, prefix: object = None, actual_seq_qlen: object = None, actual_seq_kvlen: object = None,
    sparse_mode: int = 0, gen_mask_parallel: bool = True, sync: bool = False, softmax_layout: str = "",
    sink: torch.Tensor | None = None, dropout_mask: torch.Tensor | None = None, seed: int = 0, offset: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int, int, int]:
    """FlashAttentionScore forward, differentiable (the real op has a backward); non-varlen layouts."""
    no_extras(FUSION, {"pse": pse, "padding_mask": padding_mask, "prefix": prefix, "sink": sink,
                       "dropout_mask": dropout_mask,
                       "actual_seq_qlen": actual_seq_qlen, "actual_seq_kvlen": actual_seq_kvlen,
                       "softmax_layout": softmax_layout})
    if keep_prob != 1.0:
        raise NotImplementedError(f"{FUSION}: the emulator does not model dropout (keep_prob={keep_prob})")
    if input_layout not in ("BSH", "BSND", "BNSD"):
        raise NotImplementedError(f"{FUSION}: the emulator models BSH/BSND/BNSD, not {input_layout}")
    require(query.dtype in (torch.float16, torch.bfloat16, torch.float32), FUSION, f"unsupported dtype {query.dtype}")
    require(key.dtype == value.dtype == query.dtype, FUSION, "query, key and value must share a dtype")
    contiguous(FUSION, query=query, key=key, value=value, atten_mask=atten_mask)
    require(sparse_mode in (0, 1, 2, 3, 4), FUSION, f"sparse_mode {sparse_mode} is not modelled")

    if input_layout == "BSH":
        require(query.dim() == 3 and query.shape[2] % head_num == 0, FUSION, "BSH query must be [B, S, N*D]")
        head_dim = query.shape[2] // head_num
        q, k, v = (t.view(t.shape[0], t.shape[1], -1, head_dim) for t in (query, key, value))
    else:
        require(query.dim() == key.dim() == value.dim() == 4, FUSION, f"{input_layout} tensors must be 4-D")
        q, k, v = (t.transpose(1, 2) if input_layout == "BNSD" else t for t in (query, key, value))
    head_dim = q.shape[3]
    require(q.shape[2] == head_num, FUSION, f"head_num={head_num} but the query has {q.shape[2]} heads")
    batch, q_len, n_heads, _ = q.shape
    kv_len, n_kv = k.shape[1], k.shape[2]
    require(head_dim <= 768 and k.shape[3] == head_dim, FUSION, f"head_dim {head_dim} must be <= 768 and match K")
    require(n_heads <= 256 and n_heads % n_kv == 0, FUSION, f"heads {n_heads}/{n_kv}: N <= 256 with whole GQA groups")

    if atten_mask is None:
        visible = torch.ones(1, 1, q_len, kv_len, dtype=torch.bool, device=q.device)
    elif sparse_mode in (2, 3, 4):
        _check_template(FUSION, atten_mask, sparse_mode)
        visible = _visible(sparse_mode, q_len, kv_len, pre_tockens, next_tockens, True, False, q.device)[None, None]
    else:
        require(atten_mask.dtype in (torch.bool, torch.uint8), FUSION, "atten_mask must be bool or uint8")
        shape = tuple(atten_mask.shape)
        ok = shape[-2:] == (q_len, kv_len) and shape[:-2] in ((), (1, 1), (batch, 1), (batch, n_heads))
        require(ok, FUSION, f"atten_mask must be SS, 11SS, B1SS or BNSS for S={q_len}/{kv_len}, got {shape}")
        band = _visible(sparse_mode, q_len, kv_len, pre_tockens, next_tockens, True, False, q.device)
        visible = ~atten_mask.bool().reshape(-1, shape[1] if len(shape) == 4 else 1, q_len, kv_len) & band
    visible = visible.expand(batch, n_heads, q_len, kv_len)
    require(bool(visible.any(dim=-1).all()), FUSION, "a fully masked query row is not supported")

    group = n_heads // n_kv
    scores = torch.einsum("bqnd,bknd->bnqk", q.float(), k.float().repeat_interleave(group, dim=2)) * scale
    scores = scores.masked_fill(~visible, float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    out = torch.einsum("bnqk,bknd->bqnd", probs, v.float().repeat_interleave(group, dim=2)).to(query.dtype)
    if input_layout == "BSH":
        out = out.reshape(batch, q_len, n_heads * head_dim)
    elif input_layout == "BNSD":
        out = out.transpose(1, 2).contiguous()
    empty = query.new_empty(0)
    return out, empty, empty, empty, 0, 0, 0
