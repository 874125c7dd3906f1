"""Checkpoints for the toy model (``toy_llm/``) and its dense reference, without MindIE.

The reference recomputes every position from scratch (no cache, no paging, no padding) with the
toy's weights and dtype flow (bf16 projections, fp32 attention), so a served sequence can be
checked position by position against it.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

TOY_MODEL_DIR = Path(__file__).parent / "toy_llm"
TOY_CONFIG = {"model_type": "toy_llm", "vocab_size": 64, "hidden_size": 64, "num_attention_heads": 2,
              "num_key_value_heads": 1, "head_dim": 32, "num_hidden_layers": 2, "max_position_embeddings": 512,
              "torch_dtype": "bfloat16", "bos_token_id": 1, "eos_token_id": 63}


def write_toy_checkpoint(directory: Path, seed: int = 0, **overrides: object) -> Path:
    """``config.json`` (``TOY_CONFIG`` + ``overrides``) and bf16 weights in two shards with an index."""
    config = {**TOY_CONFIG, **overrides}
    hidden, heads, kv_heads, head_dim = (config[k] for k in ("hidden_size", "num_attention_heads", "num_key_value_heads",
                                                             "head_dim"))
    generator = torch.Generator().manual_seed(seed)

    def randn(*shape: int, std: float) -> torch.Tensor:
        return (torch.randn(*shape, generator=generator) * std).to(torch.bfloat16)

    tensors = {"embed_tokens.weight": randn(config["vocab_size"], hidden, std=1.0),
               "embed_positions.weight": randn(config["max_position_embeddings"], hidden, std=0.5)}
    for i in range(config["num_hidden_layers"]):
        tensors[f"layers.{i}.q_proj.weight"] = randn(heads * head_dim, hidden, std=hidden ** -0.5)
        tensors[f"layers.{i}.k_proj.weight"] = randn(kv_heads * head_dim, hidden, std=hidden ** -0.5)
        tensors[f"layers.{i}.v_proj.weight"] = randn(kv_heads * head_dim, hidden, std=hidden ** -0.5)
        tensors[f"layers.{i}.o_proj.weight"] = randn(hidden, heads * head_dim, std=(heads * head_dim) ** -0.5)
    tensors["lm_head.weight"] = randn(config["vocab_size"], hidden, std=3 * hidden ** -0.5)
    directory.mkdir(parents=True, exist_ok=True)
    names = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": names[: len(names) // 2],
              "model-00002-of-00002.safetensors": names[len(names) // 2:]}
    for file, keys in shards.items():
        save_file({k: tensors[k] for k in keys}, str(directory / file))
    weight_map = {key: file for file, keys in shards.items() for key in keys}
    (directory / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    (directory / "config.json").write_text(json.dumps(config))
    return directory


def reference_logits(directory: Path, token_ids: list[int]) -> torch.Tensor:
    """``[len(token_ids), vocab]`` fp32 logits of every position, each attending to all earlier tokens."""
    config = json.loads((directory / "config.json").read_text())
    weights = {k: v for file in sorted(directory.glob("*.safetensors")) for k, v in load_file(str(file)).items()}
    heads, kv_heads, head_dim = config["num_attention_heads"], config["num_key_value_heads"], config["head_dim"]
    tokens = torch.tensor(token_ids)
    hidden = weights["embed_tokens.weight"][tokens] + weights["embed_positions.weight"][torch.arange(len(token_ids))]
    causal = torch.ones(len(token_ids), len(token_ids), dtype=torch.bool).tril()
    for i in range(config["num_hidden_layers"]):
        q, k, v = ((hidden @ weights[f"layers.{i}.{name}.weight"].T).view(len(token_ids), n, head_dim)
                   for name, n in (("q_proj", heads), ("k_proj", kv_heads), ("v_proj", kv_heads)))
        k = k.float().repeat_interleave(heads // kv_heads, dim=1)
        v = v.float().repeat_interleave(heads // kv_heads, dim=1)
        scores = torch.einsum("qhd,khd->hqk", q.float(), k) * head_dim ** -0.5
        probs = torch.softmax(scores.masked_fill(~causal, float("-inf")), dim=-1)
        out = torch.einsum("hqk,khd->qhd", probs, v).reshape(len(token_ids), -1).to(torch.bfloat16)
        hidden = hidden + out @ weights[f"layers.{i}.o_proj.weight"].T
    return (hidden @ weights["lm_head.weight"].T).float()
