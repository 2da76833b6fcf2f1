"""`loopcoder` command line: info, generate, complete, lsp, demo, engine, status, eval, scaffold, review, hint.

One module per subcommand (the table below), each with `add_arguments(parser)` and
`run(args) -> int`, imports what it needs at its top. `main` imports the module of the one
subcommand it runs: `loopcoder --help` imports none, and `loopcoder engine` none of the front
ends' dependencies (pygls, pydantic, jinja2). The model runtime (torch) loads only through
loading.py, when a model is loaded.

Errors from the engine (`LoopcoderError`) are printed as one clear line on stderr with
exit status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from importlib import import_module
from types import ModuleType
from typing import NamedTuple

from loopcoder.engine.errors import LoopcoderError
from loopcoder.engine.hardware import allow_mps_fallback


class Subcommand(NamedTuple):
    module: str  # under loopcoder.lsp.cli
    help: str


SUBCOMMANDS: dict[str, Subcommand] = {
    "info": Subcommand("info", "print the model's architecture, size and KV bytes per token"),
    "generate": Subcommand("generate", "generate text from a prompt, streamed to stdout"),
    "complete": Subcommand("complete", "print the completion at a cursor in FILE"),
    "lsp": Subcommand("serve", "run the language server (stdio unless --tcp); options are defaults "
                               "that the client's initializationOptions override"),
    "demo": Subcommand("demo", "start `loopcoder lsp` and drive it as an editor does: ghost text, "
                               "a review with quick fixes, a hint"),
    "engine": Subcommand("engine", "the engine daemon: run it in the foreground, or start|stop|status"),
    "status": Subcommand("status", "the running engine: model, device, memory, documents, clients, latency"),
    "eval": Subcommand("evaluate", "HumanEval pass@1 (generation, single- and multi-line infilling) of the "
                                   "completions an editor gets, each run in a sandbox"),
    "scaffold": Subcommand("scaffold", "a form app (SQLite, FastAPI, HTML form, tests) from one sentence "
                                       "or a form spec (docs/scaffold.md)"),
    "review": Subcommand("review", "review a change set (--git BASE..HEAD, --diff FILE, or files) for CI: "
                                   "SARIF, a GitHub pull-request review, or text (docs/ci.md)"),
    "hint": Subcommand("hint", "one Socratic question about PROBLEM_FILE's SOLUTION_FILE: a nudge, never code"),
}


def command_module(name: str) -> ModuleType:
    """The module of subcommand `name`, imported on first use."""
    return import_module(f"{__name__}.{SUBCOMMANDS[name].module}")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The CLI's parser. `only`: the subcommand being run, whose module is imported to add its
    options; the others are listed by name and help alone, so that `loopcoder engine` imports
    no front end's module (None: every subcommand's options, for tests)."""
    parser = argparse.ArgumentParser(prog="loopcoder", description="A self-hosted code assistant engine.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug information to stderr")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, command in SUBCOMMANDS.items():
        command_parser = sub.add_parser(name, help=command.help)
        if only is None or only == name:
            command_module(name).add_arguments(command_parser)
    return parser


def _subcommand(argv: list[str]) -> str:
    """The subcommand argv names (its first word that is not an option), "" for none."""
    return next((word for word in argv if not word.startswith("-")), "")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(_subcommand(argv)).parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if isinstance(getattr(args, "device", None), str):
        allow_mps_fallback(args.device)  # before anything imports torch, which reads it once
    try:
        return command_module(args.command).run(args)
    except LoopcoderError as e:
        print(f"loopcoder: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
