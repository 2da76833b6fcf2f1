"""One client of the engine daemon: its answers, written in order with back-pressure, and its
requests, counted so that its documents end after the last of them.

A client that does not read its answers is not read either past READ_PAUSE_BYTES unread
(its requests wait in the socket, its side), and is dropped past MAX_QUEUED_BYTES, which
streamed answers already running can still reach. Nothing here knows the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
from collections import deque
from typing import Any

from ..errors import InternalError, InvalidRequestError
from .protocol import encode, error_frame

log = logging.getLogger(__name__)

READ_PAUSE_BYTES = 8 << 20
MAX_QUEUED_BYTES = 64 << 20
FLUSH_TIMEOUT_S = 5.0  # for a disconnected client's last answers (a protocol error) to go out


class Connection:
    _ids = itertools.count(1)

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.id = next(self._ids)
        self.writer = writer
        self.client = f"conn{self.id}"
        self.cancels: dict[int, threading.Event] = {}  # request id -> its cancel flag
        self.documents: set[str] = set()  # engine keys this connection opened
        self.lock = threading.Lock()  # closed and in_flight, between the event loop and the workers
        self.closed = False
        self.in_flight = 0  # blocking requests handed to a worker and not finished
        self.bytes_moved = 0  # read and queued, over the connection's life
        self._outbox: deque[bytes] = deque()  # encoded frames not yet handed to the transport
        self._queued_bytes = 0
        self._wake = asyncio.Event()  # the outbox has frames, or the connection ends
        self.room = asyncio.Event()  # few enough answers unread to read the next request
        self.room.set()
        self._writer_task = asyncio.create_task(self._write_loop())

    def key(self, key: str) -> str:
        return f"{self.id}/{key}"

    # -- requests (any thread) ----------------------------------------------------------

    def request_started(self) -> None:
        with self.lock:
            self.in_flight += 1

    def request_finished(self) -> bool:
        """Count one request done; True when it was the last of a connection already closed,
        whose documents are then the caller's to close."""
        with self.lock:
            self.in_flight -= 1
            return self.closed and self.in_flight == 0

    def close(self) -> tuple[bool, bool]:
        """Mark the connection closed and cancel its requests: (was it already, is it idle)."""
        with self.lock:
            already, self.closed = self.closed, True
            idle = self.in_flight == 0
        for flag in list(self.cancels.values()):
            flag.set()
        self._wake.set()
        self.room.set()
        if not already:
            asyncio.get_running_loop().call_later(FLUSH_TIMEOUT_S, self.writer.transport.abort)
        return already, idle

    # -- answers (the event loop) -------------------------------------------------------

    def queue(self, data: bytes) -> bool:
        """Queue an encoded frame; False (and the transport aborted) past MAX_QUEUED_BYTES."""
        if self.closed and self._writer_task.done():
            return True
        self._outbox.append(data)
        self._queued_bytes += len(data)
        self.bytes_moved += len(data)
        self._wake.set()
        if self._queued_bytes > MAX_QUEUED_BYTES:
            log.warning("disconnecting %s: %d bytes of its answers are unread, over the %d-byte bound",
                        self.client, self._queued_bytes, MAX_QUEUED_BYTES)
            self._outbox.clear()
            self.writer.transport.abort()
            return False
        if self._queued_bytes > READ_PAUSE_BYTES:
            self.room.clear()
        return True

    async def _write_loop(self) -> None:
        """Write the answers in order, each once the client took the one before."""
        try:
            while True:
                while not self._outbox:
                    if self.closed:
                        return
                    self._wake.clear()
                    await self._wake.wait()
                data = self._outbox.popleft()
                self.writer.write(data)
                await self.writer.drain()
                self._queued_bytes -= len(data)
                if self._queued_bytes <= READ_PAUSE_BYTES:
                    self.room.set()
        except (ConnectionError, RuntimeError, asyncio.CancelledError):
            pass  # the client went away (the reader sees it too), or the daemon is stopping
        finally:
            self._outbox.clear()
            self.room.set()
            with contextlib.suppress(Exception):
                self.writer.close()


def encoded(frame: dict[str, Any]) -> bytes:
    """The frame's bytes; an answer too large for a frame becomes an error for its request."""
    try:
        return encode(frame)
    except InvalidRequestError as exc:
        log.warning("answer to request %s not sent: %s", frame.get("id"), exc)
        return encode(error_frame(frame.get("id"), InternalError(f"the answer could not be sent: {exc}")))
