"""``m1-ascend generate``: complete a prompt (text, chat message or token ids) with the engine."""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "generate", help="generate text with the engine",
        description="Run prompts through the serving engine (continuous batching over the paged KV cache) and "
                    "print the completions. Greedy unless --temperature is set.")
    parser.add_argument("--model", metavar="DIR", help="checkpoint directory (default: the demo checkpoint, built "
                                                        "on first use)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--prompt", action="append", metavar="TEXT", help="prompt text (repeat for a batch)")
    source.add_argument("--prompt-token-ids", action="append", metavar="IDS",
                        help="comma-separated prompt token ids, e.g. 1,2,3 (repeat for a batch)")
    parser.add_argument("--chat", action="store_true", help="send each --prompt as a user message in the chat format")
    parser.add_argument("--system", metavar="TEXT", help="system message for --chat")
    parser.add_argument("--max-tokens", type=int, default=64, help="tokens to generate at most (default 64)")
    parser.add_argument("--temperature", type=float, default=0.0, help="0 is greedy (default 0)")
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--top-k", type=int, default=-1)
    parser.add_argument("--repetition-penalty", type=float, default=1.0)
    parser.add_argument("--seed", type=int, help="seed for reproducible sampling")
    parser.add_argument("--stop", action="append", metavar="TEXT", help="stop string (repeatable)")
    parser.add_argument("--ignore-eos", action="store_true", help="keep going past end-of-sequence tokens")
    parser.add_argument("--device", default="cpu", choices=["cpu", "npu", "auto"], help="default cpu")
    parser.add_argument("--dtype", help="float32, bfloat16, float16 or auto (default: float32 on CPU, the "
                                        "checkpoint's dtype on NPU)")
    parser.add_argument("--block-size", type=int, default=128, help="KV cache block size in tokens (default 128)")
    parser.add_argument("--enforce-eager", action=argparse.BooleanOptionalAction, default=None,
                        help="run every step eagerly (default: decode graphs on an NPU, eager on the CPU)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per prompt")
    parser.set_defaults(handler=run)


def parse_token_ids(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"--prompt-token-ids: expected comma-separated integers, got {text!r}") from None


def run(args: argparse.Namespace) -> int:
    from ..engine import LLM, SamplingParams

    if args.chat and args.prompt is None:
        raise ValueError("--chat needs --prompt text")
    if args.system and not args.chat:
        raise ValueError("--system only applies with --chat")
    token_prompts = [parse_token_ids(t) for t in args.prompt_token_ids or []]  # fail before loading the model
    params = SamplingParams(temperature=args.temperature, top_p=args.top_p, top_k=args.top_k,
                            repetition_penalty=args.repetition_penalty, max_tokens=args.max_tokens, stop=args.stop,
                            seed=args.seed, ignore_eos=args.ignore_eos)
    llm = LLM(model=args.model, device=args.device, dtype=args.dtype, block_size=args.block_size,
              enforce_eager=args.enforce_eager)
    if args.chat:
        system = [{"role": "system", "content": args.system}] if args.system else []
        conversations = [[*system, {"role": "user", "content": text}] for text in args.prompt]
        outputs = llm.chat(conversations, params)
    elif args.prompt is not None:
        outputs = llm.generate(args.prompt, params)
    else:
        outputs = llm.generate(prompt_token_ids=token_prompts, sampling_params=params)
    for output in outputs:
        if args.json:
            print(json.dumps({"prompt_token_ids": output.prompt_token_ids, "token_ids": output.token_ids,
                              "text": output.text, "finish_reason": output.finish_reason}, ensure_ascii=False))
        else:
            print(output.text if llm.tokenizer is not None else " ".join(map(str, output.token_ids)))
    return 0
