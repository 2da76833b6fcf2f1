"""The server's read loops on stdio and TCP, in place of pygls's (pygls/io_.py `run_async`).

pygls 2.1's loop reads `Content-Length` with a strict pattern and then reads that many
bytes: a length of 50 GB ends the server with MemoryError, and a header it cannot match
(LF line endings, a typo, random bytes) leaves it waiting forever. Here the bytes go
through `framing.FrameDecoder` (bounded, resynchronising) and each message through the
protocol (`protocol.LoopcoderProtocol`), and every problem is logged, on stderr and with
window/logMessage.

On TCP, connections are served one at a time (the protocol has one writer). A server that
requires a token gives a connection TOKEN_DEADLINE_S to show it in initialize, and keeps
listening when a connection that never showed it goes; as with pygls, the end of an
admitted connection ends the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import threading
from typing import Any, Awaitable, BinaryIO, Callable

from lsprotocol import types
from pygls.io_ import StdoutWriter
from pygls.server import JsonRPCServer

from loopcoder.lsp.server.framing import FrameDecoder, Problem
from loopcoder.lsp.server.protocol import LoopcoderProtocol

log = logging.getLogger(__name__)

READ_CHUNK = 64 << 10
TOKEN_DEADLINE_S = 30.0  # for a TCP connection to send initialize with the token


async def serve_stream(read: Callable[[int], Awaitable[bytes]], protocol: LoopcoderProtocol, stop: threading.Event) -> None:
    """Hand every message of the byte stream `read` gives to `protocol`, until end of stream or `stop`."""
    decoder = FrameDecoder()
    while not stop.is_set():
        data = await read(READ_CHUNK)
        if not data:
            return
        for item in decoder.feed(data):
            if isinstance(item, Problem):
                report(protocol, item.reason)
            elif not isinstance(item, dict):
                report(protocol, f"a JSON {type(item).__name__} is not a JSON-RPC message (an object): ignored")
            else:
                dispatch(protocol, item)


def dispatch(protocol: LoopcoderProtocol, data: dict[str, Any]) -> None:
    try:
        protocol.handle_message(protocol.structure_message(data))
    except Exception:  # a bug in a handler's dispatch: the connection goes on
        log.exception("could not handle a message (method %r)", data.get("method"))


def report(protocol: LoopcoderProtocol, reason: str) -> None:
    log.warning("LSP input: %s", reason)
    protocol.notify(types.WINDOW_LOG_MESSAGE, types.LogMessageParams(type=types.MessageType.Warning,
                                                                     message=f"loopcoder: LSP input: {reason}"))


def serve_io(server: JsonRPCServer, stdin: BinaryIO | None = None, stdout: BinaryIO | None = None) -> None:
    """`server` on stdin/stdout (pygls's `start_io`, with our read loop)."""
    server._stop_event = stop = threading.Event()
    source = stdin or sys.stdin.buffer
    server.protocol.set_writer(StdoutWriter(stdout or sys.stdout.buffer))

    async def read(n: int) -> bytes:
        return await asyncio.get_running_loop().run_in_executor(server.thread_pool, source.read1, n)

    try:
        asyncio.run(serve_stream(read, server.protocol, stop))
    except BrokenPipeError:
        log.error("the connection to the client is lost: shutting down")
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.shutdown()


def serve_tcp(server: JsonRPCServer, host: str, port: int) -> None:
    """`server` on host:port (pygls's `start_tcp`, with our read loop and the token rule)."""
    server._stop_event = stop = threading.Event()
    protocol: LoopcoderProtocol = server.protocol

    async def main() -> None:
        one_at_a_time = asyncio.Lock()

        async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            async with one_at_a_time:
                protocol.connection_made()
                protocol.set_writer(writer)
                try:
                    await _serve_connection(reader, protocol, stop)
                finally:
                    writer.close()
                if protocol.admitted:
                    server.shutdown()
                else:
                    log.info("a client that never showed the token left; still listening")

        server._server = await asyncio.start_server(connection, host, port)
        log.info("serving LSP on %s", ", ".join(str(s.getsockname()) for s in server._server.sockets))
        async with server._server:
            await server._server.serve_forever()

    with contextlib.suppress(asyncio.CancelledError):
        asyncio.run(main())


async def _serve_connection(reader: asyncio.StreamReader, protocol: LoopcoderProtocol, stop: threading.Event) -> None:
    serving = asyncio.ensure_future(serve_stream(reader.read, protocol, stop))
    if not protocol.admitted:
        await asyncio.wait({serving}, timeout=TOKEN_DEADLINE_S)
        if not serving.done() and not protocol.admitted:
            log.warning("closing a connection that sent no initialize with the token within %.0f s", TOKEN_DEADLINE_S)
            serving.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await serving
