"""The server object: what it holds between messages (settings, documents, notebooks, the lazily
loaded engine, in-flight requests, review findings) and the worker pool engine work runs in. It
reads the wire with our own loops and protocol (transport.py, protocol.py), not pygls's."""

from __future__ import annotations

import asyncio
import functools
import logging
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO, Callable

from lsprotocol import types
from pygls.lsp.server import LanguageServer

from loopcoder.engine.errors import LoopcoderError
from loopcoder.engine.hardware import package_version
from loopcoder.lsp.features.context.provider import RepoContextProvider
from loopcoder.lsp.features.documents import DocumentStore
from loopcoder.lsp.features.engine_loading import LazyEngine
from loopcoder.lsp.features.inline_completion import TypedThrough, completion_options
from loopcoder.lsp.features.notebooks import Notebooks
from loopcoder.lsp.features.prewarm import prewarm
from loopcoder.lsp.features.requests import RequestTracker, Ticket
from loopcoder.lsp.features.review import Finding
from loopcoder.lsp.features.settings import ServerSettings
from loopcoder.lsp.server.protocol import LoopcoderProtocol
from loopcoder.lsp.server.transport import serve_io, serve_tcp
from loopcoder.lsp.server.validation import strict_converter

log = logging.getLogger(__name__)

NOTEBOOK_SYNC = types.NotebookDocumentSyncOptions(
    notebook_selector=[types.NotebookDocumentFilterWithCells(notebook="*", cells=[types.NotebookCellLanguage(language="python")])],
    save=True,
)


class LoopcoderServer(LanguageServer):
    protocol: LoopcoderProtocol

    def __init__(self, settings: ServerSettings = ServerSettings()):
        super().__init__("loopcoder", package_version(), text_document_sync_kind=types.TextDocumentSyncKind.Incremental,
                         notebook_document_sync=NOTEBOOK_SYNC, protocol_cls=LoopcoderProtocol,
                         converter_factory=strict_converter)
        self.settings = settings
        self.documents = DocumentStore()
        self.engine = LazyEngine()
        self.requests = RequestTracker()
        self.typed_through = TypedThrough()
        self.notebooks = Notebooks()
        self.findings: dict[str, list[Finding]] = {}  # the last review's findings per document, kept in step with edits
        self.repo_context: RepoContextProvider | None = None  # the workspace's, once initialized (docs/context.md)
        self._scratch: tempfile.TemporaryDirectory | None = None
        # The engine serializes its own work behind a lock; a few threads let a newer
        # request queue up while a cancelled one winds down.
        self.workers = ThreadPoolExecutor(max_workers=4, thread_name_prefix="loopcoder-engine")

    def start_io(self, stdin: BinaryIO | None = None, stdout: BinaryIO | None = None) -> None:
        serve_io(self, stdin, stdout)

    def start_tcp(self, host: str, port: int) -> None:
        """Listen on host:port; with `protocol.require_token(...)` first, clients must show that token."""
        serve_tcp(self, host, port)

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
