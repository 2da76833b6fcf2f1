"""`loopcoder scaffold "DESCRIPTION" --out DIR [--spec FILE] [--force] [--run [--run-venv] [--port N]]`: write a form app.
`loopcoder scaffold --change "WORDS" --spec APP/loopcoder-scaffold.json [--force] [--run]`: change one, records kept.

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

from . import build, check_folder, launch, over_existing, render, target_folder, write_files
from .change import apply_change, read_change
from .describe import MAX_NEW_TOKENS
from .existing import check_app_records, read_manifest
from .migrations import continue_history, load_history
from .records import DATABASE
from .spec import FormSpec, load_spec


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("description", nargs="?", default="",
                   help="the form in a sentence, e.g. \"a form to record equipment repairs with date, id, fault type "
                        "and handler\" (any language)")
    p.add_argument("--out", type=Path, default=None,
                   help="the folder to write the app into (created if missing); with --change, the app's folder")
    p.add_argument("--spec", type=Path, default=None,
                   help="a form spec (JSON, docs/scaffold.md), or an app's loopcoder-scaffold.json, to render "
                        "instead of asking the model")
    p.add_argument("--change", default=None, metavar="WORDS",
                   help="change an app written before, in words, e.g. \"加一个备注字段，处理人改为必填\" or \"add a notes "
                        "field and make handler required\": a new spec, its diff, and a migration that keeps the "
                        "records (give the app with --spec APP/loopcoder-scaffold.json or --out APP)")
    p.add_argument("--force", action="store_true",
                   help="overwrite files the folder already has; with --change, remove fields that records have "
                        "values for (the database is copied aside first)")
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
    if args.change is not None:
        return change(args, load_engine)
    if args.out is None:
        raise InvalidRequestError("give the app's folder with --out DIR")
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
    app, existing = over_existing(folder, app)  # an app is there (--force): the next revision, its records kept
    for line in app.repairs:
        _say(f"renamed {line}")
    for note in app.notes:  # nothing stated is dropped silently
        _say(f"note: {note}")
    fields = ", ".join(f"{f.name} ({f.type})" for f in app.spec.fields)
    _say(f"spec: {app.spec.title!r}, {len(app.spec.fields)} fields: {fields}")
    previous = _texts(folder, app.files) if existing else {}
    write_files(folder, app.files, args.force, progress=lambda path: _say(f"wrote {path}"))
    if spec_source is None:
        _say(f"to change the app, say how: loopcoder scaffold --change \"...\" --spec {folder / render.MANIFEST}")
    if existing and (folder / DATABASE).is_file():
        try:
            _migrate_now(folder, previous)
        except launch.LaunchError as e:
            _say(f"error: {e}")
            return e.code
    return _finish(args, folder)


def _finish(args: argparse.Namespace, folder: Path) -> int:
    """Print the manual commands, or with --run install, test and serve the app."""
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


def _texts(folder: Path, files: dict[str, str]) -> dict[str, str | None]:
    """What each of `files` holds in `folder` now (None: not there): what a failed migration puts back."""
    return {name: (folder / name).read_text(encoding="utf-8") if (folder / name).is_file() else None for name in files}


def _check_records(folder: Path, before: FormSpec, after: FormSpec, force: bool) -> None:
    for line in check_app_records(folder, before, after, force):
        _say(line)


def _migrate_now(folder: Path, previous: dict[str, str | None]) -> None:
    """Migrate the app's database now if an interpreter can; on failure put `previous` files back."""
    python = launch.ready_interpreter(folder)
    if python is None:
        _say(f"{folder / DATABASE} is migrated when the app next starts (no interpreter here has the app's "
             "requirements; --run makes one)")
        return
    try:
        launch.migrate(folder, python, _say)
    except launch.LaunchError as e:
        for name, text in previous.items():
            path = folder / name
            if text is None:
                path.unlink(missing_ok=True)
            else:
                path.write_text(text, encoding="utf-8")
        raise launch.LaunchError(f"{e}: the database is as it was (the migration ran in one transaction) and "
                                 "the app's files were put back as they were", e.code) from None


def change(args: argparse.Namespace, load_engine: Callable[[], EngineAPI]) -> int:
    """--change: the app's next spec from words, its diff, the records checked, the files and the migration written,
    and the database migrated when an interpreter can."""
    if args.description.strip():
        raise InvalidRequestError("--change takes the words of the change; leave out the description")
    if args.spec is None and args.out is None:
        raise InvalidRequestError("--change needs the app: --spec APP/loopcoder-scaffold.json (or --out APP)")
    path = args.spec if args.spec is not None else args.out
    path = path / render.MANIFEST if path.is_dir() else path
    folder = path.parent.absolute()
    if args.out is not None and target_folder(args.out).resolve() != folder.resolve():
        raise InvalidRequestError(f"--out {args.out} is not the folder of --spec {args.spec}: give one of them")
    manifest = read_manifest(path)
    current = load_spec(manifest["spec"]).spec
    history = load_history(manifest, current)

    def engine() -> EngineAPI:
        _say("loading the model, to name and type the new fields")
        return load_engine()

    ops = read_change(args.change, current)
    progress = _TokenProgress()
    changed = apply_change(current, ops, args.change, engine, progress=progress, max_new_tokens=args.max_tokens)
    progress.done()
    for note in changed.notes:
        _say(f"note: {note}")
    if not changed.diff:
        _say("nothing to change: the app already is what the words ask for")
        return 0
    print("\n".join(changed.diff), flush=True)
    _check_records(folder, current, changed.spec, args.force)
    history = continue_history(history, changed.spec, args.change)
    files = render.render_app(changed.spec, history)
    previous = _texts(folder, files)
    write_files(folder, files, force=True)
    written = [name for name, text in files.items() if previous[name] != text]
    _say(f"revision {history[-1].id}: wrote {', '.join(written)}")
    if (folder / DATABASE).is_file():
        try:
            _migrate_now(folder, previous)
        except launch.LaunchError as e:
            _say(f"error: {e}")
            return e.code
    else:
        _say("no records yet: the app creates its table when it starts")
    return _finish(args, folder)


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
