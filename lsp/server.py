"""The pygls language server: state, and the LSP methods registered on it.

Each handler here only translates: lsprotocol types in, a call into `lsp/features/`
(where the logic lives, free of pygls), lsprotocol types out. Engine work runs in a
thread pool, so the event loop keeps reading didChange and $/cancelRequest while a
completion decodes. `LoopcoderError` is mapped to a JSON-RPC error (requests) or a
window/showMessage (notifications) here, at the boundary, and logged with
window/logMessage; the server itself never dies of one.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import tempfile
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer
from pygls.uris import to_fs_path

from loopcoder.engine.errors import InvalidRequestError, LoopcoderError
from loopcoder.engine.hardware import package_version
from loopcoder.lsp.features import actions, hints, review
from loopcoder.lsp.features.documents import (Change, Document, DocumentOutOfSyncError, DocumentStore, Position, Range,
                                                 units_of)
from loopcoder.lsp.features.engine_loading import LazyEngine
from loopcoder.lsp.features.inline_completion import TypedThrough, completion_options, suggest
from loopcoder.lsp.features.notebooks import Cell, Notebooks
from loopcoder.lsp.features.prewarm import prewarm
from loopcoder.lsp.features import scaffold
from loopcoder.lsp.features.prompts import ActionOptions, Span
from loopcoder.lsp.features.requests import RequestTracker, Ticket
from loopcoder.lsp.features.review import DocumentOrigin, Finding
from loopcoder.lsp.features.settings import ServerSettings

log = logging.getLogger(__name__)


class LoopcoderServer(LanguageServer):
    def __init__(self, settings: ServerSettings = ServerSettings()):
        super().__init__("loopcoder", package_version(), text_document_sync_kind=types.TextDocumentSyncKind.Incremental,
                         notebook_document_sync=NOTEBOOK_SYNC)
        self.settings = settings
        self.documents = DocumentStore()
        self.engine = LazyEngine()
        self.requests = RequestTracker()
        self.typed_through = TypedThrough()
        self.notebooks = Notebooks()
        self.findings: dict[str, list[Finding]] = {}  # the last review's findings per document, kept in step with edits
        self._scratch: tempfile.TemporaryDirectory | None = None
        # The engine serializes its own work behind a lock; a few threads let a newer
        # request queue up while a cancelled one winds down.
        self.workers = ThreadPoolExecutor(max_workers=4, thread_name_prefix="loopcoder-engine")

    def scratch_dir(self) -> Path:
        """A folder for documents the server shows the user (explanations); removed with the server."""
        if self._scratch is None:
            self._scratch = tempfile.TemporaryDirectory(prefix="loopcoder-")
        return Path(self._scratch.name)

    def log_error(self, error: Exception | str) -> None:
        self.window_log_message(types.LogMessageParams(type=types.MessageType.Error, message=f"loopcoder: {error}"))

    async def in_worker(self, ticket: Ticket, work: Callable[[], Any]) -> Any:
        """`work()` in the worker pool; $/cancelRequest (pygls cancels this task) also cancels `ticket`."""
        try:
            return await asyncio.get_running_loop().run_in_executor(self.workers, work)
        except asyncio.CancelledError:
            ticket.cancel()  # the thread cannot be interrupted: the engine polls the ticket instead
            raise

    def start_prewarm(self, uri: str, text: str | None = None) -> None:
        """Prefill `uri`'s K/V (its document's text, or `text`) in the background; any later request for it cancels this."""
        if not self.settings.prewarm:
            return
        text = self.documents.get(uri).text if text is None else text
        settings, loop = self.settings, asyncio.get_running_loop()
        ticket = self.requests.begin(uri, supersede=False)

        def work() -> None:
            prewarm(self.engine.get(settings), uri, text, completion_options(settings), ticket.cancelled)

        self.workers.submit(work).add_done_callback(functools.partial(self._report_background, loop, uri))

    def _report_background(self, loop: asyncio.AbstractEventLoop, uri: str, future: Future) -> None:
        error = future.exception()
        if error is None:
            return
        # Only the event loop thread may write to the client.
        log.warning("pre-warming %s failed: %s", uri, error)
        if isinstance(error, LoopcoderError):
            loop.call_soon_threadsafe(self.log_error, f"pre-warming {uri} failed: {error}")
        else:
            loop.call_soon_threadsafe(self.log_error, f"pre-warming {uri} failed (a bug): {error!r}")


def rpc_error(ls: LoopcoderServer, error: LoopcoderError) -> JsonRpcException:
    """The JSON-RPC error a request answers with; logged to the client too."""
    ls.log_error(error)
    code = JsonRpcInvalidParams.CODE if isinstance(error, InvalidRequestError) else int(types.LSPErrorCodes.RequestFailed)
    return JsonRpcException(message=str(error), code=code)


def request(handler):
    """Map LoopcoderError to a JSON-RPC error for an async request handler."""

    @functools.wraps(handler)
    async def wrapped(ls: LoopcoderServer, *params):
        try:
            return await handler(ls, *params)
        except LoopcoderError as e:
            raise rpc_error(ls, e) from None

    return wrapped


def notification(handler):
    """Report a LoopcoderError of a notification handler: there is no response to carry it."""

    @functools.wraps(handler)
    def wrapped(ls: LoopcoderServer, params) -> None:
        try:
            handler(ls, params)
        except LoopcoderError as e:
            ls.log_error(e)
            ls.window_show_message(types.ShowMessageParams(type=types.MessageType.Error, message=f"loopcoder: {e}"))

    return wrapped


# -- lifecycle -------------------------------------------------------------------------


def initialize(ls: LoopcoderServer, params: types.InitializeParams) -> None:
    """initialize: apply initializationOptions; pygls negotiates positionEncoding and we follow it."""
    try:
        ls.settings = ls.settings.updated(params.initialization_options)
        encoding = ls.workspace.position_encoding or types.PositionEncodingKind.Utf16
        ls.documents.encoding = getattr(encoding, "value", encoding)
    except LoopcoderError as e:
        raise rpc_error(ls, e) from None


def initialized(ls: LoopcoderServer, params: types.InitializedParams) -> None:
    """initialized: start reading the model while the editor opens its first file."""
    ls.engine.start(ls.settings)


def shutdown(ls: LoopcoderServer, params: None) -> None:
    """shutdown: stop queued engine work (running work sees its tickets cancelled)."""
    for uri in ls.requests.keys():
        ls.requests.forget(uri)
    ls.workers.shutdown(wait=False, cancel_futures=True)
    if ls._scratch is not None:
        ls._scratch.cleanup()


ENGINE_KEYS = ("model", "device", "dtype", "quant", "backend", "socket", "threads", "url", "api_key", "tokenizer")  # a change of any of these loads the model anew


def apply_settings(ls: LoopcoderServer, options: Any) -> None:
    """Apply a settings object from the client; reload the model when it or where it runs changed."""
    if isinstance(options, dict) and isinstance(options.get("loopcoder"), dict):
        options = options["loopcoder"]  # {"loopcoder": {...}}, as VS Code-style clients nest them
    new = ls.settings.updated(options)
    old, ls.settings = ls.settings, new
    ls.typed_through = TypedThrough()  # another model or budget suggests other text
    if any(getattr(old, key) != getattr(new, key) for key in ENGINE_KEYS) and ls.engine.started:
        log.info("model settings changed: loading the model again")
        ls.engine = LazyEngine()
        ls.engine.start(new)


@notification
def did_change_configuration(ls: LoopcoderServer, params: types.DidChangeConfigurationParams) -> None:
    """workspace/didChangeConfiguration: settings pushed, or (null settings) to be pulled with workspace/configuration."""
    if params.settings not in (None, {}):
        apply_settings(ls, params.settings)
        return
    caps = ls.client_capabilities.workspace
    if caps is None or not caps.configuration:
        return
    loop = asyncio.get_running_loop()

    async def pull() -> None:
        try:
            items = await ls.workspace_configuration_async(
                types.ConfigurationParams(items=[types.ConfigurationItem(section="loopcoder")]))
            if items and items[0] is not None:
                notification(lambda ls, options: apply_settings(ls, options))(ls, items[0])
        except Exception as e:
            ls.log_error(f"could not read the loopcoder settings: {e}")

    loop.create_task(pull())


# -- text sync --------------------------------------------------------------------------


def _range(r: types.Range) -> Range:
    return Range(Position(r.start.line, r.start.character), Position(r.end.line, r.end.character))


def _change(change: types.TextDocumentContentChangeEvent) -> Change:
    if isinstance(change, types.TextDocumentContentChangePartial):
        return Change(change.text, _range(change.range))
    return Change(change.text)


@notification
def did_open(ls: LoopcoderServer, params: types.DidOpenTextDocumentParams) -> None:
    """textDocument/didOpen: store the text and pre-warm its K/V."""
    doc = params.text_document
    ls.documents.open(doc.uri, doc.text, doc.version, doc.language_id)
    ls.start_prewarm(doc.uri)


@notification
def did_change(ls: LoopcoderServer, params: types.DidChangeTextDocumentParams) -> None:
    """textDocument/didChange (incremental sync). A change that cannot be applied puts the document out of
    sync: the user is told once (window/showMessage), its diagnostics go, and its requests fail until the
    editor sends its whole text again."""
    doc = params.text_document
    try:
        document = ls.documents.change(doc.uri, doc.version, [_change(c) for c in params.content_changes])
    except DocumentOutOfSyncError:
        _clear_findings(ls, doc.uri)  # their lines can no longer be followed
        raise
    if not ls.documents.in_sync(doc.uri):
        return
    found = ls.findings.get(doc.uri)
    if found:  # diagnostics follow their lines; a finding whose line was edited goes away
        moved = review.relocate(found, document.text)
        if moved != found:
            ls.findings[doc.uri] = moved
            publish_findings(ls, doc.uri)


@notification
def did_save(ls: LoopcoderServer, params: types.DidSaveTextDocumentParams) -> None:
    """textDocument/didSave: pre-warm again, the user is about to go on editing (not a document out of sync:
    its text is not the editor's, and the user has been told)."""
    if ls.documents.in_sync(params.text_document.uri):
        ls.start_prewarm(params.text_document.uri)


@notification
def did_close(ls: LoopcoderServer, params: types.DidCloseTextDocumentParams) -> None:
    """textDocument/didClose: forget the text, stop its requests, unpin its K/V."""
    uri = params.text_document.uri
    ls.documents.close(uri)
    for key in ls.requests.keys():
        if key == uri or key.startswith(f"{uri}#"):
            ls.requests.forget(key)
    ls.typed_through.forget(uri)
    _clear_findings(ls, uri)
    engine = ls.engine.loaded
    if engine is not None:  # the engine lock may be busy: never block the event loop on it
        for key in [uri, *(f"{uri}#{action}" for action in ACTIONS)]:
            ls.workers.submit(engine.close, key)


def _clear_findings(ls: LoopcoderServer, uri: str) -> None:
    if ls.findings.pop(uri, None):
        ls.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=uri, diagnostics=[]))


# -- notebooks ----------------------------------------------------------------------------


def _cell(cell: types.NotebookCell) -> Cell:
    return Cell(cell.document, cell.kind == types.NotebookCellKind.Code)


def _open_cells(ls: LoopcoderServer, items: Sequence[types.TextDocumentItem]) -> None:
    for item in items:
        ls.documents.open(item.uri, item.text, item.version, item.language_id)


def _close_cells(ls: LoopcoderServer, uris: Iterable[str]) -> None:
    for uri in uris:
        if uri in ls.documents:
            ls.documents.close(uri)


@notification
def did_open_notebook(ls: LoopcoderServer, params: types.DidOpenNotebookDocumentParams) -> None:
    """notebookDocument/didOpen: its cells become documents; pre-warm the notebook's code."""
    notebook = params.notebook_document
    _open_cells(ls, params.cell_text_documents)
    ls.notebooks.open(notebook.uri, [_cell(c) for c in notebook.cells])
    ls.start_prewarm(notebook.uri, ls.notebooks.joined(notebook.uri, ls.documents))


@notification
def did_change_notebook(ls: LoopcoderServer, params: types.DidChangeNotebookDocumentParams) -> None:
    """notebookDocument/didChange: cells added, removed, re-kinded or edited."""
    uri, cells = params.notebook_document.uri, params.change.cells
    ls.notebooks.cells(uri)  # an unknown notebook is an error before anything changes
    if cells is None:
        return
    if cells.structure is not None:
        change = cells.structure.array
        ls.notebooks.splice(uri, change.start, change.delete_count, [_cell(c) for c in change.cells or ()])
        _open_cells(ls, cells.structure.did_open or ())
        _close_cells(ls, (d.uri for d in cells.structure.did_close or ()))
    for cell in cells.data or ():
        ls.notebooks.set_kind(cell.document, cell.kind == types.NotebookCellKind.Code)
    lost = []  # every cell's changes are applied, or refused, before any is reported
    for content in cells.text_content or ():
        doc = content.document
        try:
            ls.documents.change(doc.uri, doc.version, [_change(c) for c in content.changes])
        except DocumentOutOfSyncError as e:
            lost.append(str(e))
    if lost:
        raise DocumentOutOfSyncError("; ".join(lost))


@notification
def did_save_notebook(ls: LoopcoderServer, params: types.DidSaveNotebookDocumentParams) -> None:
    """notebookDocument/didSave: pre-warm again, unless a cell is out of sync (as didSave)."""
    uri = params.notebook_document.uri
    if all(ls.documents.in_sync(c.uri) for c in ls.notebooks.cells(uri) if c.uri in ls.documents):
        ls.start_prewarm(uri, ls.notebooks.joined(uri, ls.documents))


@notification
def did_close_notebook(ls: LoopcoderServer, params: types.DidCloseNotebookDocumentParams) -> None:
    """notebookDocument/didClose: forget its cells and unpin its K/V."""
    uri = params.notebook_document.uri
    cells = ls.notebooks.close(uri)
    _close_cells(ls, [c.uri for c in cells] + [d.uri for d in params.cell_text_documents])
    ls.requests.forget(uri)
    ls.typed_through.forget(uri)
    engine = ls.engine.loaded
    if engine is not None:
        ls.workers.submit(engine.close, uri)


NOTEBOOK_SYNC = types.NotebookDocumentSyncOptions(
    notebook_selector=[types.NotebookDocumentFilterWithCells(notebook="*", cells=[types.NotebookCellLanguage(language="python")])],
    save=True,
)


# -- completion ---------------------------------------------------------------------------


async def _suggestion(ls: LoopcoderServer, uri: str, position: types.Position, multiline: bool) -> str | None:
    document = ls.documents.get(uri)
    offset = document.offset_at(Position(position.line, position.character), ls.documents.encoding)
    # A snapshot: didChange may replace the document's text while the engine works.
    text, settings = document.text, ls.settings
    cell = ls.notebooks.context(uri, ls.documents)
    if cell is not None:  # a notebook cell: complete in the notebook's code, warm in the notebook's session
        uri, text, offset = cell.key, cell.text, cell.offset + offset
    ticket = ls.requests.begin(uri)  # also stops older work for this document
    rest = ls.typed_through.rest(uri, text, offset, multiline) if settings.cache else None
    if rest is not None:
        return rest

    def work() -> str | None:
        return suggest(ls.engine.get(settings), uri, text, offset, settings, multiline=multiline, cancelled=ticket.cancelled)

    suggestion = await ls.in_worker(ticket, work)
    if not ticket.cancelled():
        ls.typed_through.remember(uri, text, offset, suggestion, multiline)
    return suggestion


@request
async def inline_completion(ls: LoopcoderServer, params: types.InlineCompletionParams) -> types.InlineCompletionList | None:
    """textDocument/inlineCompletion (LSP 3.18): ghost text at the cursor."""
    multiline = params.context.trigger_kind == types.InlineCompletionTriggerKind.Invoked
    text = await _suggestion(ls, params.text_document.uri, params.position, multiline)
    if text is None:
        return None
    here = types.Range(start=params.position, end=params.position)
    return types.InlineCompletionList(items=[types.InlineCompletionItem(insert_text=text, range=here)])


@request
async def completion(ls: LoopcoderServer, params: types.CompletionParams) -> types.CompletionList | None:
    """textDocument/completion: the same suggestion, one line, as one item for clients without inline completion."""
    text = await _suggestion(ls, params.text_document.uri, params.position, multiline=False)
    if text is None:
        return None
    item = types.CompletionItem(
        label=text.strip(),
        kind=types.CompletionItemKind.Text,
        insert_text_format=types.InsertTextFormat.PlainText,
        # Insert exactly at the cursor: the client's own idea of "the word" would eat text.
        text_edit=types.TextEdit(range=types.Range(start=params.position, end=params.position), new_text=text),
    )
    # Incomplete: the suggestion depends on every character typed, so the client asks again.
    return types.CompletionList(is_incomplete=True, items=[item])


# -- code actions and commands ------------------------------------------------------------

ACTION_KIND = "refactor.loopcoder"
ACTIONS = ("review", "explain", "hint", "edit")  # each keeps its own engine session per document: `uri#action`
SEVERITY = {"error": types.DiagnosticSeverity.Error, "warning": types.DiagnosticSeverity.Warning,
            "info": types.DiagnosticSeverity.Information}


def _lsp_position(document: Document, line: int, character: int, encoding: str) -> types.Position:
    text = document.text
    start = document.starts[line]
    return types.Position(line=line, character=units_of(text[start : start + character], encoding))


def _finding_range(ls: LoopcoderServer, document: Document, f: Finding) -> types.Range:
    enc = ls.documents.encoding
    return types.Range(start=_lsp_position(document, f.line, f.start, enc), end=_lsp_position(document, f.line, f.end, enc))


def _line_range(ls: LoopcoderServer, document: Document, f: Finding) -> types.Range:
    """The whole of the finding's line, line ending excluded: what its fix replaces."""
    line_text = document.text[document.starts[f.line] :].split("\n", 1)[0].rstrip("\r")
    end = _lsp_position(document, f.line, len(line_text), ls.documents.encoding)
    return types.Range(start=types.Position(line=f.line, character=0), end=end)


def _diagnostic(ls: LoopcoderServer, document: Document, f: Finding) -> types.Diagnostic:
    return types.Diagnostic(range=_finding_range(ls, document, f), message=f.message, severity=SEVERITY[f.severity],
                            source="loopcoder", code=f.category, data={"replacement": f.replacement})


def publish_findings(ls: LoopcoderServer, uri: str) -> None:
    document = ls.documents.get(uri)
    diagnostics = [_diagnostic(ls, document, f) for f in ls.findings.get(uri, [])]
    ls.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=uri, diagnostics=diagnostics,
                                                                        version=document.version))


def _fix_action(ls: LoopcoderServer, document: Document, f: Finding) -> types.CodeAction:
    edit = types.TextEdit(range=_line_range(ls, document, f), new_text=f.replacement)
    summary = f.message if len(f.message) <= 72 else f.message[:71] + "…"
    return types.CodeAction(title=f"loopcoder: fix — {summary}", kind=types.CodeActionKind.QuickFix,
                            diagnostics=[_diagnostic(ls, document, f)], is_preferred=True,
                            edit=_workspace_edit(ls, document, [edit]))


def _workspace_edit(ls: LoopcoderServer, document: Document, edits: list[types.TextEdit]) -> types.WorkspaceEdit:
    """Versioned documentChanges where the client takes them (it refuses a stale edit), else plain changes."""
    caps = ls.client_capabilities.workspace
    versioned = caps is not None and caps.workspace_edit is not None and caps.workspace_edit.document_changes
    if versioned and document.version is not None:
        ident = types.OptionalVersionedTextDocumentIdentifier(uri=document.uri, version=document.version)
        return types.WorkspaceEdit(document_changes=[types.TextDocumentEdit(text_document=ident, edits=edits)])
    return types.WorkspaceEdit(changes={document.uri: edits})


def _overlaps(f: Finding, r: types.Range) -> bool:
    return r.start.line <= f.line <= r.end.line


@request
async def code_action(ls: LoopcoderServer, params: types.CodeActionParams) -> list[types.CodeAction]:
    """textDocument/codeAction: fixes for the review findings in range, then review, explain and hint."""
    uri, rng = params.text_document.uri, params.range
    document = ls.documents.get(uri)
    _span(ls, document, _range(rng))  # reject a range outside the document
    wanted = params.context.only
    result = [_fix_action(ls, document, f) for f in ls.findings.get(uri, []) if f.replacement and _overlaps(f, rng)]
    argument = {"uri": uri, "range": {"start": {"line": rng.start.line, "character": rng.start.character},
                                      "end": {"line": rng.end.line, "character": rng.end.character}}}
    for name, title in (("review", "Review"), ("explain", "Explain"), ("hint", "Hint")):
        kind = f"{ACTION_KIND}.{name}"
        result.append(types.CodeAction(title=f"loopcoder: {title}", kind=kind,
                                       command=types.Command(title=f"loopcoder: {title}", command=f"loopcoder.{name}",
                                                             arguments=[argument])))
    if wanted:
        result = [a for a in result if any(a.kind == k or str(a.kind).startswith(f"{k}.") for k in wanted)]
    return result


def _argument(args: tuple, command: str) -> dict:
    if len(args) != 1 or not isinstance(args[0], dict):
        raise InvalidRequestError(f"{command} takes one argument, an object like {{\"uri\": ..., \"range\": ...}}")
    if not isinstance(args[0].get("uri"), str):
        raise InvalidRequestError(f"{command}: the argument needs \"uri\", the document's URI as a string")
    return args[0]


def _lsp_range(value: Any, command: str) -> Range | None:
    """A JSON range argument, checked; None for none."""
    if value is None:
        return None
    try:
        (sl, sc), (el, ec) = ((value[k]["line"], value[k]["character"]) for k in ("start", "end"))
    except (TypeError, KeyError):
        raise InvalidRequestError(f"{command}: range must look like {{\"start\": {{\"line\": 0, \"character\": 0}}, "
                                  f"\"end\": {{...}}}}, not {value!r}") from None
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (sl, sc, el, ec)):
        raise InvalidRequestError(f"{command}: range positions must be integers, not {value!r}")
    return Range(Position(sl, sc), Position(el, ec))


def _span(ls: LoopcoderServer, document: Document, rng: Range | None) -> Span | None:
    """The whole lines a range covers; None (the whole document) for no range or an empty one."""
    if rng is None:
        return None
    start = document.offset_at(rng.start, ls.documents.encoding)
    end = document.offset_at(rng.end, ls.documents.encoding)
    if end < start:
        raise InvalidRequestError(f"range {rng.start.line}:{rng.start.character}-{rng.end.line}:{rng.end.character} ends before it starts")
    if end == start:
        return None
    last = rng.end.line - 1 if rng.end.character == 0 and rng.end.line > rng.start.line else rng.end.line
    return Span(rng.start.line, last)


class Progress:
    """Server-initiated work-done progress for a long action, when the client shows it; reports are throttled."""

    INTERVAL_S = 0.25

    def __init__(self, ls: LoopcoderServer, title: str, total_tokens: int):
        self.ls, self.title, self.total = ls, title, total_tokens
        self.token: str | None = None
        self.loop = asyncio.get_running_loop()
        self._last = 0.0

    async def __aenter__(self) -> "Progress":
        caps = self.ls.client_capabilities.window
        if caps is not None and caps.work_done_progress:
            token = f"loopcoder-{uuid.uuid4().hex}"
            try:
                await asyncio.wait_for(self.ls.work_done_progress.create_async(token), timeout=5)
                self.token = token
                self.ls.work_done_progress.begin(token, types.WorkDoneProgressBegin(title=self.title, percentage=0))
            except Exception as e:  # a client that declines progress still gets the answer
                log.info("no work-done progress for %s: %s", self.title, e)
        return self

    async def __aexit__(self, *exc) -> None:
        if self.token is not None:
            self.ls.work_done_progress.end(self.token, types.WorkDoneProgressEnd())

    def tokens(self, count: int) -> None:
        """Called from the worker thread with the tokens generated so far."""
        now = time.monotonic()
        if self.token is None or now - self._last < self.INTERVAL_S:
            return
        self._last = now
        percentage = min(99, 100 * count // max(1, self.total))
        report = types.WorkDoneProgressReport(message=f"{count} tokens", percentage=percentage)
        self.loop.call_soon_threadsafe(self.ls.work_done_progress.report, self.token, report)


def _target(ls: LoopcoderServer, args: tuple, command: str) -> tuple[str, Document, Span | None]:
    """The document and lines a command's {uri, range?} argument names, checked."""
    arg = _argument(args, command)
    uri = arg["uri"]
    document = ls.documents.get(uri)
    return uri, document, _span(ls, document, _lsp_range(arg.get("range"), command))


def _action_options(ls: LoopcoderServer) -> ActionOptions:
    s = ls.settings
    return ActionOptions(max_new_tokens=s.action_tokens, context_tokens=s.context_tokens, temperature=s.temperature)


async def _run_action(ls: LoopcoderServer, uri: str, name: str, title: str, work: Callable) -> Any:
    """Run `work(engine, text, cancelled, progress)` for document `uri` in a worker, with progress."""
    document = ls.documents.get(uri)
    text, settings = document.text, ls.settings
    ticket = ls.requests.begin(f"{uri}#{name}")
    async with Progress(ls, title, settings.action_tokens) as progress:
        return await ls.in_worker(ticket, lambda: work(ls.engine.get(settings), text, ticket.cancelled, progress.tokens))


async def review_command(ls: LoopcoderServer, *args) -> dict:
    """loopcoder.review {uri, range?}: findings as diagnostics; returns them."""
    uri, document, span = _target(ls, args, "loopcoder.review")
    language, options = document.language_id, _action_options(ls)
    version = document.version
    origin = _origin(ls, uri)
    reviewed = await _run_action(ls, uri, "review", "loopcoder: reviewing", lambda engine, text, cancelled, progress:
                                 review.review(engine, uri, text, span, language, options, cancelled, progress, origin))
    found = reviewed.findings
    for note in reviewed.notes:  # an analyzer missing or failing: the review went on without it
        ls.window_log_message(types.LogMessageParams(type=types.MessageType.Warning, message=f"loopcoder: {note}"))
    if not reviewed.complete:
        ls.window_log_message(types.LogMessageParams(type=types.MessageType.Warning, message=(
            f"loopcoder: the review of {uri} ran out of tokens (actionTokens={options.max_new_tokens}); "
            f"showing the {len(found)} finding(s) it completed")))
    answer = {"complete": reviewed.complete, "notes": reviewed.notes, "analyzers": reviewed.analyzers}
    if uri not in ls.documents:
        return {"findings": [], **answer}
    document = ls.documents.get(uri)
    if document.version != version:  # edited meanwhile: keep the findings whose lines are still there
        found = review.relocate(found, document.text)
    # A review of a selection replaces the findings inside it, keeps the others.
    kept = [f for f in ls.findings.get(uri, []) if span is not None and not span.first <= f.line <= span.last]
    ls.findings[uri] = sorted(kept + found, key=lambda f: f.line)
    publish_findings(ls, uri)
    return {"findings": [f.as_json() for f in found], **answer}


def _origin(ls: LoopcoderServer, uri: str) -> DocumentOrigin:
    """What the analyzers need to know of a document: its file, whose ruff settings apply (a notebook
    cell's: its notebook's), and whether it is a notebook cell."""
    notebook = ls.notebooks.notebook_of(uri)
    file_uri = notebook or uri
    path = to_fs_path(file_uri) if file_uri.startswith("file:") else None
    return DocumentOrigin(Path(path) if path else None, notebook_cell=notebook is not None)


async def explain_command(ls: LoopcoderServer, *args) -> dict:
    """loopcoder.explain {uri, range?}: markdown, shown as a document where the client can, else as a message."""
    uri, document, span = _target(ls, args, "loopcoder.explain")
    language, options = document.language_id, _action_options(ls)
    markdown = await _run_action(ls, uri, "explain", "loopcoder: explaining", lambda engine, text, cancelled, progress:
                                 actions.explain(engine, uri, text, span, language, options, cancelled, progress))
    shown = await _show_markdown(ls, markdown or "_The model gave no explanation._", "explanation")
    return {"markdown": markdown, "uri": shown}


async def hint_command(ls: LoopcoderServer, *args) -> dict:
    """loopcoder.hint {uri, range?}: a Socratic question, shown as a message; an answer with code is refused
    (hints.socratic), and after a refused retry the command fails with a message that says so."""
    uri, document, span = _target(ls, args, "loopcoder.hint")
    language, options = document.language_id, _action_options(ls)
    text = await _run_action(ls, uri, "hint", "loopcoder: thinking of a hint", lambda engine, text, cancelled, progress:
                             hints.hint(engine, uri, text, span, language, options, cancelled, progress))
    ls.window_show_message(types.ShowMessageParams(type=types.MessageType.Info, message=f"Hint: {text}"))
    return {"hint": text}


async def edit_command(ls: LoopcoderServer, *args) -> dict:
    """loopcoder.edit {uri, range, instruction}: rewrite the selection and apply it with workspace/applyEdit."""
    arg = _argument(args, "loopcoder.edit")
    uri, instruction = arg.get("uri"), arg.get("instruction")
    document = ls.documents.get(uri)
    rng = _lsp_range(arg.get("range"), "loopcoder.edit")
    if rng is None:
        start, end = 0, len(document.text)
    else:
        start, end = (document.offset_at(p, ls.documents.encoding) for p in rng)
    if end < start:
        raise InvalidRequestError("loopcoder.edit: the range ends before it starts")
    language, options, version = document.language_id, _action_options(ls), document.version
    new_text = await _run_action(ls, uri, "edit", "loopcoder: editing", lambda engine, text, cancelled, progress:
                                 actions.edit(engine, uri, text, start, end, instruction, language, options, cancelled, progress))
    document = ls.documents.get(uri)
    if document.version != version:
        raise LoopcoderError(f"{uri} changed while the edit was being written; run loopcoder.edit again")
    lsp_range = types.Range(start=_lsp_position_at(ls, document, start), end=_lsp_position_at(ls, document, end))
    edit = _workspace_edit(ls, document, [types.TextEdit(range=lsp_range, new_text=new_text)])
    response = await ls.workspace_apply_edit_async(types.ApplyWorkspaceEditParams(edit=edit, label=f"loopcoder: {instruction}"))
    return {"applied": bool(response.applied), "newText": new_text, "failureReason": response.failure_reason}


def _lsp_position_at(ls: LoopcoderServer, document: Document, offset: int) -> types.Position:
    p = document.position_at(offset, ls.documents.encoding)
    return types.Position(line=p.line, character=p.character)


async def scaffold_command(ls: LoopcoderServer, *args) -> dict:
    """loopcoder.scaffoldForm {description, target, spec?, force?}: write a form app into the folder `target`
    (a URI or a path) with workspace/applyEdit: CreateFile and TextDocumentEdit operations."""
    arg = _scaffold_argument(args)
    folder = _scaffold_folder(ls, arg["target"])
    force = bool(arg.get("force", False))
    _check_creates_files(ls)
    # The file names are fixed: refuse a full folder before any model work.
    scaffold.check_folder(folder, force)
    settings, description, spec = ls.settings, arg.get("description", ""), arg.get("spec")
    ticket = ls.requests.begin(f"scaffold:{folder}")
    async with Progress(ls, "loopcoder: designing the form", scaffold.describe.MAX_NEW_TOKENS) as progress:
        app = await ls.in_worker(ticket, lambda: scaffold.build(description, spec, lambda: ls.engine.get(settings),
                                                                ticket.cancelled, progress.tokens))
    paths = scaffold.planned_paths(folder, app.files, force)
    changes: list = []
    for path, text in zip(paths, app.files.values()):
        uri = path.as_uri()
        changes.append(types.CreateFile(uri=uri, options=types.CreateFileOptions(overwrite=force, ignore_if_exists=False)))
        changes.append(types.TextDocumentEdit(
            text_document=types.OptionalVersionedTextDocumentIdentifier(uri=uri, version=None),
            edits=[types.TextEdit(range=types.Range(start=types.Position(line=0, character=0),
                                                    end=types.Position(line=0, character=0)), new_text=text)]))
    response = await ls.workspace_apply_edit_async(types.ApplyWorkspaceEditParams(
        edit=types.WorkspaceEdit(document_changes=changes), label=f"loopcoder: scaffold {app.spec.title}"))
    return {"applied": bool(response.applied), "failureReason": response.failure_reason, "folder": folder.as_uri(),
            "files": [p.as_uri() for p in paths], "run": f"cd {folder} && {app.run}", "api": scaffold.API,
            "spec": app.spec.as_json(), "repairs": app.repairs}


def _scaffold_argument(args: tuple) -> dict:
    command = "loopcoder.scaffoldForm"
    if len(args) != 1 or not isinstance(args[0], dict):
        raise InvalidRequestError(f"{command} takes one argument, an object like "
                                  "{\"description\": \"a form to ...\", \"target\": \"file:///folder\"}")
    arg = args[0]
    if not isinstance(arg.get("target"), str) or not arg["target"].strip():
        raise InvalidRequestError(f"{command}: the argument needs \"target\", the app's folder as a URI or a path")
    has_spec = arg.get("spec") is not None
    if not has_spec and (not isinstance(arg.get("description"), str) or not arg["description"].strip()):
        raise InvalidRequestError(f"{command}: the argument needs \"description\", the form in a sentence "
                                  "(or \"spec\", a form spec)")
    if "force" in arg and not isinstance(arg["force"], bool):
        raise InvalidRequestError(f"{command}: \"force\" must be true or false, not {arg['force']!r}")
    return arg


def _scaffold_folder(ls: LoopcoderServer, target: str) -> Path:
    """The target folder as a path; inside the workspace when the client named one."""
    if "://" in target:
        if not target.startswith("file://"):
            raise InvalidRequestError(f"loopcoder.scaffoldForm: the target must be a file:// URI or a path, not {target!r}")
        target = to_fs_path(target) or ""
    folder = scaffold.target_folder(target)
    roots = [Path(p) for p in (to_fs_path(f.uri) for f in ls.workspace.folders.values()) if p]
    if not roots and ls.workspace.root_path:
        roots = [Path(ls.workspace.root_path)]
    if roots and not any(folder.resolve().is_relative_to(root.resolve()) for root in roots):
        raise scaffold.ScaffoldTargetError(f"loopcoder.scaffoldForm: {folder} is outside the workspace "
                                           f"({', '.join(str(r) for r in roots)}); choose a folder inside it")
    return folder


def _check_creates_files(ls: LoopcoderServer) -> None:
    caps = ls.client_capabilities.workspace
    edit = caps.workspace_edit if caps is not None else None
    # Resource operations exist only inside documentChanges, so "create" implies them (Neovim lists only that).
    if edit is None or types.ResourceOperationKind.Create not in (edit.resource_operations or []):
        raise LoopcoderError("this editor cannot create files through workspace/applyEdit (its workspaceEdit "
                             "capabilities lack the \"create\" resource operation): run "
                             "`loopcoder scaffold \"DESCRIPTION\" --out DIR` in a terminal instead")


async def _show_markdown(ls: LoopcoderServer, markdown: str, what: str) -> str | None:
    """Show `markdown` in the editor: as a document (window/showDocument) if the client can, else a message."""
    caps = ls.client_capabilities.window
    if caps is not None and caps.show_document is not None and caps.show_document.support:
        path = ls.scratch_dir() / f"{what}-{uuid.uuid4().hex[:8]}.md"
        path.write_text(markdown, encoding="utf-8")
        uri = path.as_uri()
        try:
            result = await ls.window_show_document_async(types.ShowDocumentParams(uri=uri, take_focus=False))
            if result.success:
                return uri
        except Exception as e:  # fall back to a message
            log.info("showDocument failed: %s", e)
    ls.window_show_message(types.ShowMessageParams(type=types.MessageType.Info, message=markdown))
    return None


COMMANDS: list[tuple[str, Callable]] = [
    ("loopcoder.review", review_command),
    ("loopcoder.explain", explain_command),
    ("loopcoder.hint", hint_command),
    ("loopcoder.edit", edit_command),
    ("loopcoder.scaffoldForm", scaffold_command),
]


FEATURES: list[tuple[str, Any, Callable]] = [
    (types.INITIALIZE, None, initialize),
    (types.INITIALIZED, None, initialized),
    (types.SHUTDOWN, None, shutdown),
    (types.WORKSPACE_DID_CHANGE_CONFIGURATION, None, did_change_configuration),
    (types.TEXT_DOCUMENT_DID_OPEN, None, did_open),
    (types.TEXT_DOCUMENT_DID_CHANGE, None, did_change),
    (types.TEXT_DOCUMENT_DID_SAVE, types.SaveOptions(include_text=False), did_save),
    (types.TEXT_DOCUMENT_DID_CLOSE, None, did_close),
    (types.NOTEBOOK_DOCUMENT_DID_OPEN, None, did_open_notebook),
    (types.NOTEBOOK_DOCUMENT_DID_CHANGE, None, did_change_notebook),
    (types.NOTEBOOK_DOCUMENT_DID_SAVE, None, did_save_notebook),
    (types.NOTEBOOK_DOCUMENT_DID_CLOSE, None, did_close_notebook),
    (types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions(), inline_completion),
    (types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions(), completion),
    (types.TEXT_DOCUMENT_CODE_ACTION,
     types.CodeActionOptions(code_action_kinds=[types.CodeActionKind.QuickFix, ACTION_KIND]), code_action),
]


def build_server(settings: ServerSettings = ServerSettings()) -> LoopcoderServer:
    """A server with every feature registered; `settings` are the defaults initializationOptions override."""
    server = LoopcoderServer(settings)
    for method, options, handler in FEATURES:
        server.feature(method, options)(handler)
    for name, handler in COMMANDS:
        server.command(name)(request(handler))
    return server
