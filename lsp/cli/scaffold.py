"""`loopcoder scaffold`: a form app from one sentence or a form spec (the feature: lsp/features/scaffold/)."""

from __future__ import annotations

import argparse

from loopcoder.lsp.features.engine_loading import add_backend_arguments
from loopcoder.lsp.features.scaffold import command as scaffold_command

from .common import add_model_args
from .loading import engine_for


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_args(p)
    add_backend_arguments(p)
    scaffold_command.add_arguments(p)


def run(args: argparse.Namespace) -> int:
    return scaffold_command.run(args, lambda: engine_for(args))
