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
from concurrent.futures import Future, ThreadPoolExecutor
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Callable

from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer

from loopcoder.engine.errors import InvalidRequestError, LoopcoderError
from loopcoder.lsp.features.documents import Change, DocumentStore, Position, Range
from loopcoder.lsp.features.engine_loading import LazyEngine
from loopcoder.lsp.features.inline_completion import suggest
from loopcoder.lsp.features.prewarm import prewarm
from loopcoder.lsp.features.requests import RequestTracker, Ticket
from loopcoder.lsp.features.settings import ServerSettings

log = logging.getLogger(__name__)


def _version() -> str:
    try:
        return version("loopcoder")
    except PackageNotFoundError:
        return "0+unknown"


class LoopcoderServer(LanguageServer):
    def __init__(self, settings: ServerSettings = ServerSettings()):
        super().__init__("loopcoder", _version(), text_document_sync_kind=types.TextDocumentSyncKind.Incremental)
        self.settings = settings
        self.documents = DocumentStore()
        self.engine = LazyEngine()
        self.requests = RequestTracker()
        # The engine serializes its own work behind a lock; a few threads let a newer
        # request queue up while a cancelled one winds down.
        self.workers = ThreadPoolExecutor(max_workers=4, thread_name_prefix="loopcoder-engine")

    def log_error(self, error: Exception) -> None:
        self.window_log_message(types.LogMessageParams(type=types.MessageType.Error, message=f"loopcoder: {error}"))

    async def in_worker(self, ticket: Ticket, work: Callable[[], Any]) -> Any:
        """`work()` in the worker pool; $/cancelRequest (pygls cancels this task) also cancels `ticket`."""
        try:
            return await asyncio.get_running_loop().run_in_executor(self.workers, work)
        except asyncio.CancelledError:
            ticket.cancel()  # the thread cannot be interrupted: the engine polls the ticket instead
            raise

    def start_prewarm(self, uri: str) -> None:
        """Prefill `uri`'s K/V in the background; any later request for it cancels this."""
        if not self.settings.prewarm:
            return
        text, settings, loop = self.documents.get(uri).text, self.settings, asyncio.get_running_loop()
        ticket = self.requests.begin(uri, supersede=False)

        def work() -> None:
            prewarm(self.engine.get(settings), uri, text, settings.max_tokens, ticket.cancelled)

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
    async def wrapped(ls: LoopcoderServer, params):
        try:
            return await handler(ls, params)
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
    """textDocument/didChange (incremental sync)."""
    doc = params.text_document
    ls.documents.change(doc.uri, doc.version, [_change(c) for c in params.content_changes])


@notification
def did_save(ls: LoopcoderServer, params: types.DidSaveTextDocumentParams) -> None:
    """textDocument/didSave: pre-warm again, the user is about to go on editing."""
    ls.start_prewarm(params.text_document.uri)


@notification
def did_close(ls: LoopcoderServer, params: types.DidCloseTextDocumentParams) -> None:
    """textDocument/didClose: forget the text, stop its requests, unpin its K/V."""
    uri = params.text_document.uri
    ls.documents.close(uri)
    ls.requests.forget(uri)
    engine = ls.engine.loaded
    if engine is not None:  # the engine lock may be busy: never block the event loop on it
        ls.workers.submit(engine.close, uri)


# -- completion ---------------------------------------------------------------------------


async def _suggestion(ls: LoopcoderServer, uri: str, position: types.Position, multiline: bool) -> str | None:
    document = ls.documents.get(uri)
    offset = document.offset_at(Position(position.line, position.character), ls.documents.encoding)
    # A snapshot: didChange may replace the document's text while the engine works.
    text, settings = document.text, ls.settings
    ticket = ls.requests.begin(uri)

    def work() -> str | None:
        return suggest(ls.engine.get(settings), uri, text, offset, settings, multiline=multiline, cancelled=ticket.cancelled)

    return await ls.in_worker(ticket, work)


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


FEATURES: list[tuple[str, Any, Callable]] = [
    (types.INITIALIZE, None, initialize),
    (types.INITIALIZED, None, initialized),
    (types.SHUTDOWN, None, shutdown),
    (types.TEXT_DOCUMENT_DID_OPEN, None, did_open),
    (types.TEXT_DOCUMENT_DID_CHANGE, None, did_change),
    (types.TEXT_DOCUMENT_DID_SAVE, types.SaveOptions(include_text=False), did_save),
    (types.TEXT_DOCUMENT_DID_CLOSE, None, did_close),
    (types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions(), inline_completion),
    (types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions(), completion),
]


def build_server(settings: ServerSettings = ServerSettings()) -> LoopcoderServer:
    """A server with every feature registered; `settings` are the defaults initializationOptions override."""
    server = LoopcoderServer(settings)
    for method, options, handler in FEATURES:
        server.feature(method, options)(handler)
    return server
