"""What the commands ask of the editor's window: work-done progress (window/workDoneProgress/create,
$/progress) while an action writes, and window/showDocument for markdown, each where the client can."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

from lsprotocol import types

from loopcoder.lsp.server.state import LoopcoderServer

log = logging.getLogger(__name__)


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


async def show_markdown(ls: LoopcoderServer, markdown: str, what: str) -> str | None:
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
