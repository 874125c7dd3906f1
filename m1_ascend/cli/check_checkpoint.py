"""``m1-ascend check-checkpoint DIR``: validate a checkpoint from its headers and show what it says.

Reads no weights: every tensor's name and shape is checked against ``config.json``; then the
values the public sources leave open (architecture.md §8: rope_theta, eps, token ids, role
tokens, chat layout) are printed so they can be compared with the official release.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..config import BaichuanM1Config

# The §5 layout for a system + user turn, rendered with placeholder contents.
PROBE_CHAT = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]
DOCUMENTED_LAYOUT = "<B_SYS>S<C_Q>U<C_A>"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "check-checkpoint", help="validate a checkpoint's tensors, config and tokenizer without loading weights",
        description="Check every tensor name and shape in DIR against its config.json (reading only safetensors "
                    "headers), then print the geometry, token ids, role tokens and chat layout it defines.")
    parser.add_argument("directory", type=Path, metavar="DIR", help="checkpoint directory (official layout)")
    parser.set_defaults(handler=run)


def _heads(config: BaichuanM1Config, layer: int) -> str:
    n_heads, n_kv_heads, head_dim = config.layer_heads(layer)
    return f"{n_heads} q / {n_kv_heads} kv heads x {head_dim}"


def run(args: argparse.Namespace) -> int:
    from ..checkpoint import expected_shapes, load_config, validate_checkpoint
    from ..tokenizer import DEFAULT_ROLE_TOKEN_IDS, TOKENIZER_FILE, M1Tokenizer

    directory: Path = args.directory
    if not directory.is_dir():
        raise ValueError(f"{directory}: not a directory")
    config = load_config(directory)
    files = validate_checkpoint(directory, config)
    shapes = expected_shapes(config)
    params = sum(math.prod(shape) for shape in shapes.values())
    print(f"{directory}: all {len(shapes)} tensors match config.json "
          f"({params:,} parameters in {len(set(files.values()))} file(s))")
    kinds = {"global": [i for i in range(config.num_hidden_layers) if not config.is_sliding(i)],
             f"sliding window {config.sliding_window}": config.sliding_window_layers}
    layout = ", ".join(f"{len(layers)} {kind} ({_heads(config, layers[0])})" for kind, layers in kinds.items() if layers)
    print(f"  {config.num_hidden_layers} layers: {layout}")
    print(f"  hidden {config.hidden_size}, intermediate {config.intermediate_size}, vocab {config.vocab_size}, "
          f"rope_theta {config.rope_theta}, rms_norm_eps {config.rms_norm_eps}, "
          f"bos/eos/pad {config.bos_token_id}/{config.eos_token_id}/{config.pad_token_id}")
    if not (directory / TOKENIZER_FILE).exists():
        print(f"  tokenizer: none ({TOKENIZER_FILE} missing)")
        return 0
    tokenizer = M1Tokenizer.from_pretrained(directory)
    if tokenizer.vocab_size > config.vocab_size:
        raise ValueError(f"the tokenizer has {tokenizer.vocab_size} ids but config.json vocab_size is {config.vocab_size}")
    roles = ", ".join(f"{token}={token_id}" for token, token_id in tokenizer.role_token_ids.items())
    note = "" if tokenizer.role_token_ids == DEFAULT_ROLE_TOKEN_IDS else " (differ from the documented 71..76)"
    print(f"  tokenizer: {tokenizer.vocab_size} ids; {roles}{note}; eos {tokenizer.eos_token_ids}; "
          f"stop {tokenizer.stop_token_ids}")
    rendered = tokenizer.render_chat(PROBE_CHAT)
    verdict = "as documented" if rendered == DOCUMENTED_LAYOUT else f"differs from the documented {DOCUMENTED_LAYOUT!r}"
    print(f"  chat layout: {rendered!r} ({verdict})")
    return 0
