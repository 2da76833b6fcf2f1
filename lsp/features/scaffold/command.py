"""`loopcoder scaffold "DESCRIPTION" --out DIR [--spec FILE] [--force] [--run [--run-venv] [--port N]]`: write a form app.

Progress goes to stderr; to stdout, the commands that install, test and start the app, or with
--run the app's URL once it answers (launch.py). Every file is checked (inside DIR,
not already there unless --force) before anything is written, and before the model is
loaded, so a refusal is quick and leaves DIR as it was.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable

from loopcoder.engine.api import EngineAPI
from loopcoder.engine.errors import InvalidRequestError

from . import build, check_folder, launch, render, target_folder, write_files
from .describe import MAX_NEW_TOKENS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("description", nargs="?", default="",
                   help="the form in a sentence, e.g. \"a form to record equipment repairs with date, id, fault type "
                        "and handler\" (any language)")
    p.add_argument("--out", required=True, type=Path, help="the folder to write the app into (created if missing)")
    p.add_argument("--spec", type=Path, default=None,
                   help="a form spec (JSON, docs/scaffold.md), or an app's loopcoder-scaffold.json, to render "
                        "instead of asking the model")
    p.add_argument("--force", action="store_true", help="overwrite files the folder already has")
    p.add_argument("--max-tokens", type=int, default=MAX_NEW_TOKENS,
                   help=f"tokens the model may spend on the spec (default: {MAX_NEW_TOKENS})")
    p.add_argument("--run", action="store_true",
                   help="then install what the app needs (this interpreter if it has it all, else the app's own "
                        ".venv), run the app's tests, start it and print its URL; Ctrl-C stops it")
    p.add_argument("--run-venv", action="store_true",
                   help="with --run: always make the app's own .venv, even when this interpreter has everything")
    p.add_argument("--port", type=int, default=None,
                   help="the port of the printed command (default 8000) or of --run (default: a free one)")


def _say(message: str) -> None:
    print(f"loopcoder scaffold: {message}", file=sys.stderr, flush=True)


def _read_spec(path: Path) -> Any:
    """The spec in a file: the spec inside an app's manifest, else the file's text (load_spec checks it)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidRequestError(f"cannot read the spec {path}: {e}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return text
    if isinstance(data, dict) and data.get("generator") == "loopcoder scaffold" and "spec" in data:
        return data["spec"]
    return text


def run(args: argparse.Namespace, load_engine: Callable[[], EngineAPI]) -> int:
    folder = target_folder(args.out)
    spec_source = _read_spec(args.spec) if args.spec is not None else None
    if spec_source is None and not args.description.strip():
        raise InvalidRequestError("give the form as a sentence (loopcoder scaffold \"a form to ...\" --out DIR) "
                                  "or as a spec (--spec FILE)")
    # The file names are fixed: check the folder now, before minutes of model work.
    check_folder(folder, args.force)
    if args.run_venv and not args.run:
        raise InvalidRequestError("--run-venv goes with --run")
    if args.port is not None and not 0 < args.port < 65536:
        raise InvalidRequestError(f"--port {args.port}: give a port from 1 to 65535")
    if args.run and args.port is not None:
        launch.check_port(args.port)

    def engine() -> EngineAPI:
        _say("loading the model")
        loaded = load_engine()
        _say("asking the model for what the sentence leaves open")
        return loaded

    progress = _TokenProgress() if spec_source is None else None
    app = build(args.description, spec_source, engine, progress=progress, max_new_tokens=args.max_tokens)
    if progress is not None:
        progress.done()
    for line in app.repairs:
        _say(f"renamed {line}")
    for note in app.notes:  # nothing stated is dropped silently
        _say(f"note: {note}")
    fields = ", ".join(f"{f.name} ({f.type})" for f in app.spec.fields)
    _say(f"spec: {app.spec.title!r}, {len(app.spec.fields)} fields: {fields}")
    write_files(folder, app.files, args.force, progress=lambda path: _say(f"wrote {path}"))
    if spec_source is None:
        _say(f"the spec is in {folder / render.MANIFEST}: edit its \"spec\" and rerun with --spec {folder / render.MANIFEST} "
             "--force to change the app")
    if not args.run:
        print(launch.manual_commands(folder, args.port or 8000))
        return 0
    try:
        python = launch.prepare_interpreter(folder, _say, fresh=args.run_venv)
        launch.run_tests(folder, python, _say)
        return launch.serve(folder, python, args.port or launch.free_port(), _say)
    except launch.LaunchError as e:
        _say(f"error: {e}")
        return e.code


class _TokenProgress:
    """Tokens written so far, on one rewritten stderr line when it is a terminal."""

    def __init__(self) -> None:
        self.count = 0
        self.tty = sys.stderr.isatty()

    def __call__(self, count: int) -> None:
        self.count = count
        if self.tty and count % 8 == 0:
            print(f"\rloopcoder scaffold: {count} tokens", end="", file=sys.stderr, flush=True)

    def done(self) -> None:
        if self.tty:
            print("\r", end="", file=sys.stderr)
        if self.count:
            _say(f"the model answered in {self.count} tokens")
