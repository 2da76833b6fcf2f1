"""`loopcoder eval`: HumanEval pass@1 of the completions an editor gets (the harness: lsp/eval/)."""

from __future__ import annotations

import argparse

from loopcoder.lsp.eval import command as eval_command

from .common import add_model_args
from .loading import engine_for


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_args(p)
    eval_command.add_arguments(p)


def run(args: argparse.Namespace) -> int:
    return eval_command.run(args, lambda: engine_for(args))
