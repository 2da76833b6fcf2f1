"""`loopcoder hint`: one Socratic question about a student's solution (its options and run: lsp/review_cli.py)."""

from __future__ import annotations

import argparse

from loopcoder.lsp.features.engine_loading import add_backend_arguments
from loopcoder.lsp.review_cli import add_hint_arguments, run_hint

from .common import add_model_args
from .loading import engine_for


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_args(p)
    add_backend_arguments(p)
    add_hint_arguments(p)


def run(args: argparse.Namespace) -> int:
    return run_hint(args, lambda: engine_for(args))
