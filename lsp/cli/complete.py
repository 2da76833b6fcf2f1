"""`loopcoder complete`: the completion at a cursor in a file, as the editor would get it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from loopcoder.engine.errors import InvalidRequestError
from loopcoder.lsp.features.completion import CompletionOptions, complete, offset_of
from loopcoder.lsp.features.engine_loading import add_backend_arguments

from .common import add_model_args, add_sampling_args, report
from .loading import engine_for


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_args(p)
    add_sampling_args(p, 64)
    p.add_argument("file", type=Path)
    p.add_argument("--line", type=int, required=True, help="1-based line of the cursor")
    p.add_argument("--col", type=int, required=True, help="1-based column of the cursor")
    p.add_argument("--single-line", action="store_true", help="stop at the end of the line")
    p.add_argument("--show-prompt-tail", action="store_true", help="show the lines before the cursor too")
    add_backend_arguments(p)


def run(args: argparse.Namespace) -> int:
    try:
        text = args.file.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidRequestError(f"cannot read {args.file}: {e}") from None
    offset = offset_of(text, args.line, args.col)
    engine = engine_for(args)
    options = CompletionOptions(max_new_tokens=args.max_tokens, multiline=not args.single_line, temperature=args.temperature)
    completion = complete(engine, args.file.resolve().as_uri(), text, offset, options)
    if args.show_prompt_tail:
        tail = text[:offset].split("\n")[-6:]
        print("\n".join(f"    {line}" for line in tail[:-1]))
        print(f"    {tail[-1]}\033[2m{completion.text or '(no completion)'}\033[0m" if sys.stdout.isatty()
              else f"    {tail[-1]}⟨{completion.text}⟩")
    else:
        print(completion.text)
    report(completion.result)
    return 0
