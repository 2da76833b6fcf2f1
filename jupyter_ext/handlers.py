"""The extension's HTTP endpoints, under /loopcoder/ (docs/jupyter.md shows their bodies).

Each handler only translates: a JSON body in (`requests` checks it), a call into
`lsp/features/` in a worker thread, JSON out. `LoopcoderError` becomes a JSON error with
a message and a status (400 bad request, 422 refused by a policy, 503 engine unavailable)
here, at the boundary, and is logged; anything else is a 500 whose message names the
error, never a stack trace.

Completion streams when the body asks (`"stream": true`): newline-delimited JSON, one
`{"text": ...}` line each time the suggestion grows, then `{"done": true, ...}`.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from pathlib import Path
from typing import Any

import tornado.iostream
import tornado.web
from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from loopcoder.engine.api import EngineAPI
from loopcoder.engine.errors import (
    CancelledError,
    EngineUnavailableError,
    InvalidRequestError,
    LoopcoderError,
    ModelLoadError,
    OutputPolicyError,
    TokenizerError,
)
from loopcoder.lsp.features import hints, review, scaffold, tracebacks
from loopcoder.lsp.features.completion import complete
from loopcoder.lsp.features.scaffold import launch
from loopcoder.lsp.features.inline_completion import completion_options
from loopcoder.lsp.features.notebooks import notebook_context
from loopcoder.lsp.features.prompts import ActionOptions

from . import requests as bodies

log = logging.getLogger(__name__)

LANGUAGE = "python"


def status_of(error: LoopcoderError) -> int:
    if isinstance(error, InvalidRequestError):
        return 400
    if isinstance(error, CancelledError):
        return 409
    if isinstance(error, OutputPolicyError):
        return 422
    if isinstance(error, (EngineUnavailableError, ModelLoadError, TokenizerError)):
        return 503
    return 500


def json_errors(method):
    """Answer a handler's LoopcoderError (and any bug) with a JSON error message, logged here."""

    @functools.wraps(method)
    async def wrapped(self: "LoopcoderHandler", *args: Any) -> None:
        try:
            await method(self, *args)
        except tornado.iostream.StreamClosedError:  # the browser went away mid-stream: nobody to answer
            log.info("loopcoder %s: the client closed the connection", self.request.path)
        except LoopcoderError as e:
            log.warning("loopcoder %s: %s", self.request.path, e)
            self.fail(status_of(e), str(e), type(e).__name__)
        except Exception as e:  # a bug: say which, keep the stack trace in the server's log only
            log.exception("loopcoder %s failed", self.request.path)
            self.fail(500, f"internal error in loopcoder ({type(e).__name__}: {e}); the server log has details",
                      "InternalError")

    return wrapped


class LoopcoderHandler(ExtensionHandlerMixin, APIHandler):
    @property
    def ext(self):
        return self.extensionapp

    def body(self) -> dict:
        return bodies.json_body(self.request.body)

    def fail(self, status: int, message: str, kind: str) -> None:
        if self._finished:
            return
        if self._headers_written:  # a stream already under way: the error is its last line
            self.finish(json.dumps({"error": kind, "message": message}) + "\n")
            return
        self.clear()
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": kind, "message": message}))

    def options(self) -> ActionOptions:
        return ActionOptions(max_new_tokens=self.ext.action_tokens, context_tokens=self.ext.context_budget)


class CompleteHandler(LoopcoderHandler):
    """POST /loopcoder/complete {path, cells, cell_index, offset, stream?, multiline?}: ghost text at the cursor."""

    _ticket = None

    @tornado.web.authenticated
    @json_errors
    async def post(self) -> None:
        request = bodies.completion_request(self.body())
        ext = self.ext
        context = notebook_context(request.path, request.cells, request.index, ext.include_outputs, ext.max_output_chars)
        options = completion_options(ext.server_settings, multiline=request.multiline)
        self._ticket = ticket = ext.requests.begin(request.path)  # a newer keystroke in this notebook stops this one
        loop = asyncio.get_running_loop()
        updates: asyncio.Queue = asyncio.Queue()

        def on_text(text: str) -> None:
            loop.call_soon_threadsafe(updates.put_nowait, text)

        def work():
            return complete(ext.get_engine(), request.path, context.text, context.offset + request.offset, options,
                            ticket.cancelled, on_text if request.stream else None)

        future = asyncio.ensure_future(ext.in_worker(work))
        future.add_done_callback(lambda _: updates.put_nowait(None))
        if request.stream:
            while (text := await updates.get()) is not None:
                if not self._headers_written:
                    self.set_header("Content-Type", "application/x-ndjson")
                    self.set_header("Cache-Control", "no-cache")
                await self._line({"text": text})
        completion = await future
        ext.record(request.path, completion.result.usage)
        cancelled = ticket.cancelled()
        answer = {"text": "" if cancelled else completion.text, "cancelled": cancelled,
                  "usage": vars(completion.result.usage), "prompt_tokens": completion.prompt_tokens}
        if request.stream:
            self.set_header("Content-Type", "application/x-ndjson")
            await self._line({"done": True, **answer})
            self.finish()
        else:
            self.finish(json.dumps(answer))

    async def _line(self, value: dict) -> None:
        self.write(json.dumps(value) + "\n")
        await self.flush()

    def on_connection_close(self) -> None:
        if self._ticket is not None:  # the user typed on, or left: stop decoding for this cursor
            self._ticket.cancel()


class CellActionHandler(LoopcoderHandler):
    """POST {path, cells, cell_index}: one action on a notebook cell. A subclass says which cells it
    refuses (`check`), what it runs in a worker thread (`run`), and the JSON it answers (`answer`)."""

    empty_cell = ""  # why an empty cell is refused, e.g. "there is nothing to review"; "": it is not

    @tornado.web.authenticated
    @json_errors
    async def post(self) -> None:
        request = bodies.cell_request(self.body())
        self.check(request)
        options = self.options()
        result = await self.ext.in_worker(lambda: self.run(self.ext.get_engine(), request, options))
        self.finish(json.dumps(self.answer(request, result)))

    def check(self, request: bodies.CellRequest) -> None:
        if self.empty_cell and not request.cell.source.strip():
            raise InvalidRequestError(f"cell {request.index} is empty: {self.empty_cell}")

    def run(self, engine: EngineAPI, request: bodies.CellRequest, options: ActionOptions) -> Any:
        raise NotImplementedError

    def answer(self, request: bodies.CellRequest, result: Any) -> dict:
        raise NotImplementedError


class ExplainErrorHandler(CellActionHandler):
    """POST /loopcoder/explain-error {path, cells, cell_index}: markdown on the cell's error output."""

    def check(self, request: bodies.CellRequest) -> None:
        if not request.tracebacks:
            raise InvalidRequestError(f"cell {request.index} has no error output to explain: run it, and ask "
                                      "again if it fails")

    def run(self, engine: EngineAPI, request: bodies.CellRequest, options: ActionOptions) -> str:
        return tracebacks.explain_error(engine, request.path, request.cell.source, request.tracebacks[-1], LANGUAGE,
                                        options)

    def answer(self, request: bodies.CellRequest, markdown: str) -> dict:
        return {"markdown": markdown or "_The model gave no explanation._"}


class ReviewHandler(CellActionHandler):
    """POST /loopcoder/review {path, cells, cell_index}: findings on the cell's lines, most severe first."""

    empty_cell = "there is nothing to review"

    def run(self, engine: EngineAPI, request: bodies.CellRequest, options: ActionOptions) -> review.Review:
        origin = review.DocumentOrigin(Path(self.serverapp.root_dir) / request.path, notebook_cell=True)
        return review.review(engine, request.path, request.cell.source, None, LANGUAGE, options, origin=origin)

    def answer(self, request: bodies.CellRequest, reviewed: review.Review) -> dict:
        for note in reviewed.notes:  # an analyzer missing or failing: the review went on without it
            log.warning("loopcoder review of %s: %s", request.path, note)
        starts = _line_starts(request.cell.source)
        findings = [{**f.as_json(), "from": starts[f.line] + f.start, "to": starts[f.line] + f.end}
                    for f in reviewed.findings]
        return {"findings": findings, "complete": reviewed.complete, "notes": reviewed.notes,
                "analyzers": reviewed.analyzers}


class HintHandler(CellActionHandler):
    """POST /loopcoder/hint {path, cells, cell_index}: a Socratic question; 422 when the model would only answer with code."""

    empty_cell = "write a first attempt, then ask for a hint"

    def run(self, engine: EngineAPI, request: bodies.CellRequest, options: ActionOptions) -> str:
        return hints.hint(engine, request.path, request.cell.source, None, LANGUAGE, options)

    def answer(self, request: bodies.CellRequest, text: str) -> dict:
        return {"hint": text}


class ScaffoldHandler(LoopcoderHandler):
    """POST /loopcoder/scaffold {path, folder, description | spec, force?, preview?}: a form app in the notebook's
    directory. With "preview": true nothing is written: the answer has the spec, its `summary` and the files it
    would write; the front end confirms by posting that spec back."""

    @tornado.web.authenticated
    @json_errors
    async def post(self) -> None:
        request = bodies.scaffold_request(self.body())
        root = Path(self.serverapp.root_dir).resolve()
        folder = scaffold.target_folder(root / Path(request.path).parent / request.folder)
        if not folder.resolve().is_relative_to(root):  # a symlinked directory leads out of the server's root
            raise scaffold.ScaffoldTargetError(f"{request.folder!r} leads outside the server's root directory")
        scaffold.check_folder(folder, request.force)  # before any model work
        app = await self.ext.in_worker(lambda: scaffold.build(request.description, request.spec, self.ext.get_engine))
        if request.force:  # over an app already there: its next revision, its records checked and kept
            app, _ = await self.ext.in_worker(lambda: scaffold.over_existing(folder, app))
        if request.preview:
            paths = scaffold.planned_paths(folder, app.files, request.force)
        else:
            paths = await self.ext.in_worker(lambda: scaffold.write_files(folder, app.files, request.force))
        relative = folder.resolve().relative_to(root).as_posix()
        answer = {
            "folder": relative, "files": [p.resolve().relative_to(root).as_posix() for p in paths],
            "run": launch.manual_commands(Path(relative)), "spec": app.spec.as_json(), "repairs": app.repairs, "notes": list(app.notes)}
        if request.preview:
            answer.update(preview=True, summary=scaffold.spec_summary(app.spec))
        self.finish(json.dumps(answer))


class StatsHandler(LoopcoderHandler):
    """GET /loopcoder/stats: the settings, whether the engine is loaded, its stats, and token usage per notebook."""

    @tornado.web.authenticated
    @json_errors
    async def get(self) -> None:
        ext = self.ext
        engine = ext.engine.loaded
        stats = await ext.in_worker(engine.stats) if engine is not None else None
        self.finish(json.dumps({
            "backend": ext.backend, "model": ext.model, "context_budget": ext.context_budget,
            "loaded": engine is not None, "engine": stats,
            "usage": {key: vars(usage) for key, usage in ext.usage.items()}}, default=str))


def _line_starts(text: str) -> list[int]:
    starts = [0]
    for line in text.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    return starts


HANDLERS = [
    ("complete", CompleteHandler),
    ("explain-error", ExplainErrorHandler),
    ("review", ReviewHandler),
    ("hint", HintHandler),
    ("scaffold", ScaffoldHandler),
    ("stats", StatsHandler),
]
