"""`loopcoder review`: a change set (--git BASE..HEAD, --diff FILE, or files) reviewed for CI,
as text, SARIF or a GitHub review (the review itself: lsp/features/ci_review/)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from loopcoder.engine.errors import InvalidRequestError
from loopcoder.lsp.features.ci_review import diff
from loopcoder.lsp.features.ci_review.formats import FORMATS, render, use_color
from loopcoder.lsp.features.ci_review.review import FAIL_ON, ReviewOptions, exit_status, review_changes
from loopcoder.lsp.features.engine_loading import add_backend_arguments
from loopcoder.lsp.features.prompts import ActionOptions

from .common import add_model_args, read_input
from .loading import engine_for


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_args(p)
    add_backend_arguments(p)
    p.add_argument("paths", nargs="*", type=Path, help="files or directories to review whole (instead of a diff)")
    p.add_argument("--git", metavar="BASE..HEAD", help="review `git diff BASE..HEAD` (or BASE...HEAD) of the repository")
    p.add_argument("--diff", metavar="FILE", help="review a unified diff file ('-' reads stdin)")
    p.add_argument("--root", type=Path, default=None,
                   help="the repository root that paths in the diff are relative to (default: the current directory)")
    p.add_argument("--format", default="text", choices=FORMATS,
                   help="text for people (default), sarif (SARIF 2.1.0 for code scanning), or github (a pull-request "
                        "review body for the GitHub API)")
    p.add_argument("--output", "-o", type=Path, default=None, help="write the report here (default: stdout)")
    p.add_argument("--fail-on", default="never", choices=FAIL_ON,
                   help="exit with status 1 when a finding is at least this severe (default: never)")
    p.add_argument("--no-model", action="store_true", help="report the analyzers' findings only; load no model")
    p.add_argument("--no-analyzers", action="store_true", help="do not run ruff and bandit")
    p.add_argument("--max-tokens", type=int, default=384, help="tokens the model may write per hunk (default: 384)")
    p.add_argument("--temperature", type=float, default=0.0, help="0 means greedy (default)")
    p.add_argument("--color", default="auto", choices=("auto", "always", "never"),
                   help="colors in --format text: auto (on a terminal, unless NO_COLOR is set), always, never")



def run(args: argparse.Namespace) -> int:
    inputs = [name for name, given in (("--git", args.git), ("--diff", args.diff), ("paths", args.paths)) if given]
    if len(inputs) != 1:
        raise InvalidRequestError("give exactly one of --git BASE..HEAD, --diff FILE or paths to review"
                                  + (f", not {' and '.join(inputs)}" if inputs else ""))
    if args.max_tokens < 1:
        raise InvalidRequestError(f"--max-tokens must be at least 1, not {args.max_tokens}")
    if args.output is not None and not args.output.parent.is_dir():
        raise InvalidRequestError(f"cannot write {args.output}: {args.output.parent} is not a directory")
    root = args.root or Path.cwd()
    if args.git:
        changes = diff.from_git(args.git, root)
    elif args.diff:
        changes = diff.from_diff(read_input(args.diff, "the diff"), root)
    else:
        changes = diff.from_paths(args.paths, root)
    options = ReviewOptions(model=not args.no_model, analyzers=not args.no_analyzers,
                            actions=ActionOptions(max_new_tokens=args.max_tokens, temperature=args.temperature))
    report = review_changes(changes, lambda: engine_for(args), options, model_name=_model_name(args), progress=_progress())
    if args.output is not None:
        args.output.write_text(render(report, args.format, color=args.color == "always", commit=changes.commit))
    else:
        sys.stdout.write(render(report, args.format, color=use_color(sys.stdout, args.color), commit=changes.commit))
    return exit_status(report, args.fail_on)


def _model_name(args: argparse.Namespace) -> str:
    if getattr(args, "backend", "") in ("openai", "tgi"):
        return f"{args.model or 'the served model'} at {args.url}"
    return str(args.model) if args.model else "SmolLM2-135M-Instruct (embedded default)"


def _progress():
    if not sys.stderr.isatty():
        return None
    return lambda message: print(f"loopcoder: {message}", file=sys.stderr, flush=True)
