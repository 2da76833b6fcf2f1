"""`loopcoder complete`: the completion at a cursor in a file, as the editor would get it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from loopcoder.engine.errors import InvalidRequestError
from loopcoder.lsp.features.completion import CompletionOptions, complete, offset_of
from loopcoder.lsp.features.context.provider import DEFAULT_BUDGET_TOKENS, RepoContextProvider
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
    p.add_argument("--repo", type=Path, default=None,
                   help="the repository (workspace folder) FILE belongs to: definitions of the names near the cursor "
                        "and the signatures of the files FILE imports go into the prompt (docs/context.md)")
    p.add_argument("--repo-context-tokens", type=int, default=DEFAULT_BUDGET_TOKENS,
                   help=f"with --repo: the most tokens of repository context (default {DEFAULT_BUDGET_TOKENS}; 0: off)")
    p.add_argument("--show-context", action="store_true", help="with --repo: print the context's text to stderr")
    add_backend_arguments(p)


def run(args: argparse.Namespace) -> int:
    try:
        text = args.file.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidRequestError(f"cannot read {args.file}: {e}") from None
    offset = offset_of(text, args.line, args.col)
    provider = _repo_provider(args)  # a bad --repo fails here, before the model loads
    engine = engine_for(args)
    options = CompletionOptions(max_new_tokens=args.max_tokens, multiline=not args.single_line, temperature=args.temperature)
    context = None
    if provider is not None and engine.tokenizer is not None:
        context = provider.context_ids(engine.tokenizer, args.file.resolve(), text, offset)
        if args.show_context and context is not None:
            print(engine.tokenizer.decode([*context.before, *context.lead]), file=sys.stderr)
        print(f"repository context: {len(context) if context else 0} tokens", file=sys.stderr)
    completion = complete(engine, args.file.resolve().as_uri(), text, offset, options, context=context)
    if args.show_prompt_tail:
        tail = text[:offset].split("\n")[-6:]
        print("\n".join(f"    {line}" for line in tail[:-1]))
        print(f"    {tail[-1]}\033[2m{completion.text or '(no completion)'}\033[0m" if sys.stdout.isatty()
              else f"    {tail[-1]}⟨{completion.text}⟩")
    else:
        print(completion.text)
    report(completion.result)
    return 0


def _repo_provider(args: argparse.Namespace) -> RepoContextProvider | None:
    """The repository context of --repo, indexed now; None without --repo."""
    if args.repo is None:
        return None
    root = args.repo.expanduser()
    if not root.is_dir():
        raise InvalidRequestError(f"--repo {args.repo}: not a folder")
    if args.repo_context_tokens < 0:
        raise InvalidRequestError(f"--repo-context-tokens {args.repo_context_tokens}: give 0 (off) or more")
    if not args.file.resolve().is_relative_to(root.resolve()):
        raise InvalidRequestError(f"{args.file} is not inside --repo {args.repo}")
    provider = RepoContextProvider([root.resolve()], args.repo_context_tokens)
    provider.build()
    return provider
