"""`loopcoder generate`: text from a prompt, streamed to stdout."""

from __future__ import annotations

import argparse
import sys

from loopcoder.engine.sampling import SamplingParams

from .common import add_model_args, add_sampling_args, report
from .loading import load_engine


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_args(p)
    add_sampling_args(p, 128)
    p.add_argument("--prompt", required=True, help="the prompt text ('-' reads stdin)")
    p.add_argument("--chat", action="store_true", help="wrap the prompt as a user turn of the chat template")
    p.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")


def run(args: argparse.Namespace) -> int:
    engine = load_engine(args)
    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    if args.chat:
        prompt = engine.tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True)
    params = SamplingParams(max_new_tokens=args.max_tokens, temperature=args.temperature, top_k=args.top_k,
                            top_p=args.top_p, seed=args.seed, stop=tuple(args.stop))
    result = engine.generate_for("<cli>", engine.tokenizer.encode(prompt), params,
                                 on_token=lambda _tok, text: print(text, end="", flush=True))
    print()
    report(result)
    return 0
