"""`loopcoder eval`: HumanEval pass@1 of the completions an editor would get, run in the sandbox;
`--kinds scaffold`: the fields, types and choices of form specs against the sentences that asked for them.

The arguments are checked and the tasks built before the model loads, so a typo fails
in a fraction of a second. Backends as everywhere: the running engine daemon or the model
in process (`--backend local`), or a remote OpenAI-compatible or TGI server (`--backend
openai --url URL [--model NAME] [--tokenizer PATH]`).
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Callable

from loopcoder.engine.errors import InvalidRequestError
from loopcoder.engine.hardware import cpu_model

from .tasks import KINDS, SCAFFOLD, Task, build_tasks, parse_kinds, select

DEFAULT_OUT = Path("loopcoder-eval.jsonl")
DEFAULT_TIMEOUT_S = 10.0


def add_arguments(p: argparse.ArgumentParser) -> None:
    from loopcoder.lsp.features.engine_loading import add_backend_arguments

    add_backend_arguments(p)
    p.add_argument("--kinds", default=",".join(KINDS),
                   help=f"comma-separated task kinds out of {', '.join(KINDS)} (default: all of these); or "
                        f"{SCAFFOLD} alone: sentences to form specs (docs/scaffold.md)")
    p.add_argument("--limit", type=int, default=None,
                   help="at most this many tasks of each kind, a subset picked by --seed (default: every task)")
    p.add_argument("--seed", type=int, default=0, help="picks the --limit subset (default: 0)")
    fills = p.add_mutually_exclusive_group()
    fills.add_argument("--raw", action="store_true",
                       help="send the bare prompt to the engine: no prompt building, token healing, dedent stop "
                            "or post-processing (measures what the editor path adds or loses)")
    fills.add_argument("--no-model", action="store_true",
                       help=f"--kinds {SCAFFOLD}: read the sentences without the model (open types become text)")
    fills.add_argument("--canonical", action="store_true",
                       help="fill every hole with the reference solution, no model: checks the tasks and the "
                            "sandbox (every task should pass)")
    p.add_argument("--max-tokens", type=int, default=None,
                   help="tokens per fill (default: 320 generation, 64 single-line, 160 multi-line)")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                   help=f"seconds each test program may run (default: {DEFAULT_TIMEOUT_S:g})")
    p.add_argument("--jobs", type=int, default=1, help="test programs run at once, beside generation (default: 1)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"per-task results, JSONL (default: {DEFAULT_OUT})")
    p.add_argument("--summary-to", type=Path, help="also write the markdown summary to this file")


def prepare(args: argparse.Namespace) -> list[Task]:
    """Check the arguments and build the tasks; raises InvalidRequestError or EvalDataError."""
    if args.max_tokens is not None and args.max_tokens <= 0:
        raise InvalidRequestError(f"--max-tokens must be positive, not {args.max_tokens}")
    if not args.timeout > 0:
        raise InvalidRequestError(f"--timeout must be a positive number of seconds, not {args.timeout}")
    if args.jobs < 1:
        raise InvalidRequestError(f"--jobs must be at least 1, not {args.jobs}")
    kinds = parse_kinds(args.kinds)
    if args.limit is not None and args.limit <= 0:  # before reading the data: a typo fails at once
        raise InvalidRequestError(f"--limit must be a positive number of tasks per kind, not {args.limit}")
    return select(build_tasks(kinds), args.limit, args.seed)


def run(args: argparse.Namespace, load_engine: Callable[[], object]) -> int:
    from .fills import EditorFill, RawFill, canonical_fill
    from .runner import EvalRun, limits_for, run_eval

    if parse_kinds(args.kinds) == (SCAFFOLD,):
        return run_scaffold(args, load_engine)
    if args.no_model:
        raise InvalidRequestError(f"--no-model is for --kinds {SCAFFOLD}; --canonical runs HumanEval without a model")
    tasks = prepare(args)
    limits = limits_for(args.timeout)
    if args.canonical:
        fill, path = canonical_fill, "canonical fills (no model)"
    else:
        engine = load_engine()
        fill = (RawFill if args.raw else EditorFill)(engine, args.max_tokens)
        path = "raw prompt (--raw)" if args.raw else "editor path (lsp.features.completion.complete)"
    model = "" if args.canonical else f"{args.model or 'default SmolLM2-135M-Instruct Q4_1 GGUF'}, "
    run_info = EvalRun(f"HumanEval: {model}{path}", command_line(args), machine())
    try:
        run_eval(tasks, fill, run_info, limits=limits, jobs=args.jobs, out=args.out, summary_to=args.summary_to)
    finally:
        if hasattr(fill, "close"):
            fill.close()
    print(f"per-task results: {args.out}", file=sys.stderr)
    return 0


def run_scaffold(args: argparse.Namespace, load_engine: Callable[[], object]) -> int:
    """The scaffold sentences, the model loaded once and only if a sentence leaves something open."""
    from .scaffold import load_sentences, run_scaffold_eval

    items = load_sentences()
    if args.limit is not None:
        if args.limit <= 0:
            raise InvalidRequestError(f"--limit must be a positive number of sentences, not {args.limit}")
        items = items[: args.limit]
    engine = None if args.no_model else lru_cache(maxsize=1)(load_engine)
    model = "no model" if args.no_model else f"{args.model or 'default SmolLM2-135M-Instruct Q4_1 GGUF'} where open"
    run_scaffold_eval(items, engine, f"Scaffold sentences: {model}", out=args.out)
    print(f"per-sentence results: {args.out}", file=sys.stderr)
    return 0


def command_line(args: argparse.Namespace) -> str:
    """The `loopcoder eval` command that reproduces this run."""
    words = ["loopcoder", "eval", "--kinds", ",".join(parse_kinds(args.kinds))]
    if args.model:
        words += ["--model", str(args.model)]
    if args.limit is not None:
        words += ["--limit", str(args.limit), "--seed", str(args.seed)]
    words += ["--raw"] if args.raw else ["--canonical"] if args.canonical else []
    if args.max_tokens is not None:
        words += ["--max-tokens", str(args.max_tokens)]
    if args.timeout != DEFAULT_TIMEOUT_S:
        words += ["--timeout", f"{args.timeout:g}"]
    return " ".join(words)


def machine() -> str:
    import torch

    return f"{date.today().isoformat()}, {cpu_model()} ({os.cpu_count()} cores), torch {torch.get_num_threads()} threads"
