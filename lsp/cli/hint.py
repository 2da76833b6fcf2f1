"""`loopcoder hint`: one Socratic question about PROBLEM_FILE's SOLUTION_FILE, a nudge and
never code (the hint itself: lsp/features/hints.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from loopcoder.engine.errors import InvalidRequestError
from loopcoder.lsp.features import hints
from loopcoder.lsp.features.prompts import ActionOptions
from loopcoder.lsp.features.ci_review.context import language_of
from loopcoder.lsp.features.engine_loading import add_backend_arguments

from .common import add_model_args, read_input
from .loading import engine_for


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_args(p)
    add_backend_arguments(p)
    p.add_argument("problem_file", type=Path, help="the problem statement (text or markdown)")
    p.add_argument("solution_file", type=Path, help="the student's code so far")
    p.add_argument("--max-tokens", type=int, default=512, help="token budget of each try (a hint stops at 160)")
    p.add_argument("--temperature", type=float, default=0.0, help="0 means greedy (default)")



def run(args: argparse.Namespace) -> int:
    problem = read_input(str(args.problem_file), "the problem file")
    solution = read_input(str(args.solution_file), "the solution file")
    for text, path, what in ((problem, args.problem_file, "problem statement"), (solution, args.solution_file, "code")):
        if not text.strip():
            raise InvalidRequestError(f"{path} is empty: a hint needs the {what}")
    options = ActionOptions(max_new_tokens=args.max_tokens, temperature=args.temperature)
    engine = engine_for(args)
    print(hints.hint(engine, args.solution_file.resolve().as_uri(), solution, language=language_of(args.solution_file.name),
                     options=options, problem=problem))
    return 0
