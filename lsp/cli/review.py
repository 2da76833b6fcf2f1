"""`loopcoder review`: a change set reviewed for CI (its options and run: lsp/review_cli.py)."""

from __future__ import annotations

import argparse

from loopcoder.lsp.features.engine_loading import add_backend_arguments
from loopcoder.lsp.review_cli import add_review_arguments, run_review

from .common import add_model_args
from .loading import engine_for


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_args(p)
    add_backend_arguments(p)
    add_review_arguments(p)


def run(args: argparse.Namespace) -> int:
    return run_review(args, lambda: engine_for(args))
