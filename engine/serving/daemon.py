"""`loopcoder engine`: one process that owns the model, shared by every editor and notebook.

It listens on a unix socket (mode 0600, in a 0700 directory) for the frames of
`engine.protocol`; where the OS has no unix sockets (Windows), or with
LOOPCODER_DAEMON_TRANSPORT=tcp, on loopback TCP behind a token that only this user can read
(tcp_endpoint.py). Each connection is one client (an LSP server, the Jupyter extension,
the CLI); its documents live in the engine under `<connection>/<key>`, so two editors
with the same file open have two sessions whose identical blocks are stored once (the
content-hashed prefix cache). Requests run on worker threads that drive the engine's
scheduler, so everyone's work shares each forward step.

A connection that breaks (the client was killed) has its requests cancelled at the next
step and its documents closed, their blocks left in the prefix cache. A malformed frame
gets an error frame and the connection is closed; the daemon itself never stops for a
client's mistake. With `idle_timeout_s` it exits once no client has been connected for
that long (the daemon a front end starts for itself).

With tensor parallelism (`ranks`, engine/parallel/launch.py) this process is rank 0: a
follower rank that dies stops the daemon, and however it stops, `run` releases and
joins the followers.
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import logging
import os
import signal
import statistics
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..api import Priority
from ..engine import Engine
from ..errors import InvalidRequestError, LoopcoderError, shown
from ..hardware import package_version
from .connection import Connection, encoded
from .memory import TrimAfterBursts
from .socket_file import answers, daemon_transport
from .tcp_endpoint import AUTH_TIMEOUT_S, HOST, Endpoint, admit, read_endpoint, write_endpoint
from .protocol import (
    PROTOCOL_VERSION,
    FrameDecoder,
    ProtocolError,
    error_frame,
    params_from_wire,
    require,
    token_ids,
)
from ..sampling import DedentStop

if TYPE_CHECKING:
    from ..parallel.launch import FollowerRanks

log = logging.getLogger(__name__)

MAX_WORKERS = 64  # requests in flight at once, over all clients
_BLOCKING_OPS = frozenset({"open", "sync", "generate", "close", "stats"})
LATENCY_WINDOW = 256  # recent requests kept for `stats`
TRIM_AFTER_BYTES = 1 << 20  # a connection that moved this much has its freed heap handed back when it ends


class EngineServer:
    def __init__(self, engine: Engine, socket_path: Path, *, model_name: str = "", model_path: str = "",
                 idle_timeout_s: float | None = None, http: tuple[str, int] | None = None,
                 http_token: str | None = None, http_max_body: int | None = None,
                 ranks: FollowerRanks | None = None, transport: str | None = None,
                 auth_timeout_s: float = AUTH_TIMEOUT_S):
        self.engine = engine
        self.transport = transport or daemon_transport()  # "unix", or "tcp": socket_path is the endpoint file
        self.endpoint: Endpoint | None = None  # the port and token, once listening on TCP
        self.auth_timeout_s = auth_timeout_s  # for a TCP connection's token
        self.ranks = ranks  # the tensor-parallel followers, when this process is rank 0
        self.http = http  # (host, port): also serve the HTTP API (engine.http)
        self.http_token = http_token
        self.http_max_body = http_max_body  # bytes; None: the HTTP API's default (http.limits)
        self.socket_path = Path(socket_path)
        self.model_name = model_name
        self.model_path = model_path  # resolved; "" for the embedded default
        self.idle_timeout_s = idle_timeout_s
        self.connections: dict[int, Connection] = {}
        self._unadmitted: set[asyncio.StreamWriter] = set()  # TCP connections that have not shown the token yet
        self.started = time.time()
        self.latencies: deque[tuple[float, float]] = deque(maxlen=LATENCY_WINDOW)  # (first token s, total s)
        self.requests_served = 0
        self._workers = ThreadPoolExecutor(MAX_WORKERS, thread_name_prefix="loopcoder-request")
        self._stop: asyncio.Event | None = None
        self._server: asyncio.AbstractServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._trim = TrimAfterBursts()
        self._tokenizer_state = engine.tokenizer.to_state() if engine.tokenizer is not None else None

    # -- lifecycle ----------------------------------------------------------------------

    async def serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = self._server = await self._listen()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                self._loop.add_signal_handler(sig, self._stop.set)
        watchdog = asyncio.create_task(self._idle_watchdog())
        if self.ranks is not None:
            self.ranks.watch(lambda reason: self._loop.call_soon_threadsafe(self._stop.set))
        http_task = None
        if self.http is not None:
            from .http import build_app, serve_http

            limit = {"max_body_bytes": self.http_max_body} if self.http_max_body else {}
            app = build_app(self.engine, model_name=self.model_name, token=self.http_token, **limit)
            http_task = asyncio.create_task(serve_http(app, *self.http, self._stop))
        log.info("engine listening on %s", self.address())
        try:
            if http_task is None:
                await self._stop.wait()
            else:
                await asyncio.wait({http_task, asyncio.create_task(self._stop.wait())},
                                   return_when=asyncio.FIRST_COMPLETED)
                if http_task.done() and not self._stop.is_set():
                    http_task.result()  # the HTTP server failed (port taken): stop with its error
        finally:
            self._stop.set()
            if http_task is not None:
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await http_task
            watchdog.cancel()
            server.close()
            for writer in [*(conn.writer for conn in self.connections.values()), *self._unadmitted]:
                writer.close()
            await server.wait_closed()
            self._drop_socket()
            self._workers.shutdown(wait=False, cancel_futures=True)
            log.info("engine stopped")

    def address(self) -> str:
        """Where this daemon listens, for its log."""
        if self.endpoint is None:
            return str(self.socket_path)
        return f"{self.endpoint.host}:{self.endpoint.port} (endpoint file {self.socket_path})"

    async def _listen(self) -> asyncio.AbstractServer:
        self._private_directory()
        if self.socket_path.exists():
            if answers(self.socket_path):
                raise LoopcoderError(f"an engine already listens on {self.socket_path}; "
                                     f"stop it with `loopcoder engine stop` or choose another --socket")
            if self.transport == "unix":
                self.socket_path.unlink()  # left behind by an engine that died
        if self.transport == "tcp":
            return await self._listen_tcp()
        return await self._listen_unix()

    def _private_directory(self) -> None:
        """The socket's directory, made 0700 and checked to be this user's (POSIX; on Windows
        the user's local app data is theirs alone)."""
        directory = self.socket_path.parent
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not hasattr(os, "getuid"):
            return
        info = directory.stat()
        if info.st_uid != os.getuid():
            raise LoopcoderError(f"socket directory {directory} belongs to another user; choose --socket")
        if info.st_mode & 0o077 and directory != Path(os.environ.get("XDG_RUNTIME_DIR", "/nonexistent")):
            os.chmod(directory, 0o700)  # ours, but made by hand with wider rights

    async def _listen_tcp(self) -> asyncio.AbstractServer:
        """Loopback, a port the OS picks, and the endpoint file (replacing a stale one) naming it."""
        server = await asyncio.start_server(self._handle, host=HOST, port=0, limit=1 << 20, start_serving=False)
        self.endpoint = Endpoint.new(server.sockets[0].getsockname()[1])
        try:
            write_endpoint(self.socket_path, self.endpoint)
        except BaseException:
            server.close()
            raise
        await server.start_serving()  # no connection is taken before the token exists
        return server

    async def _listen_unix(self) -> asyncio.AbstractServer:
        old_umask = os.umask(0o177)  # the socket is created 0600: only this user may connect
        try:
            server = await asyncio.start_unix_server(self._handle, path=str(self.socket_path), limit=1 << 20)
        finally:
            os.umask(old_umask)
        os.chmod(self.socket_path, 0o600)
        return server

    def _drop_socket(self) -> None:
        if self.endpoint is not None:  # the endpoint file, unless another engine's has replaced it
            with contextlib.suppress(OSError, LoopcoderError):
                if read_endpoint(self.socket_path).token != self.endpoint.token:
                    return
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()

    async def _idle_watchdog(self) -> None:
        if not self.idle_timeout_s:
            return
        idle_since = time.monotonic()
        while True:
            await asyncio.sleep(min(1.0, self.idle_timeout_s / 4))
            if self.connections or self.http is not None:  # an HTTP API is never idle: clients come and go
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since >= self.idle_timeout_s:
                log.info("no client for %.0f s: stopping", self.idle_timeout_s)
                self._stop.set()
                return

    # -- a connection -------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.transport == "tcp" and not await self._admit(reader, writer):
            return
        conn = Connection(writer)
        self.connections[conn.id] = conn
        decoder = FrameDecoder()
        try:
            while not conn.closed:
                data = await reader.read(1 << 16)
                if not data:
                    break
                conn.bytes_moved += len(data)
                try:
                    messages = decoder.feed(data)
                except ProtocolError as exc:
                    self._send(conn, error_frame(None, exc))
                    break
                for message in messages:
                    await conn.room.wait()  # back-pressure: its earlier answers are still unread
                    if conn.closed:
                        break
                    self._dispatch(conn, message)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass  # the daemon is stopping: the connection ends with it (asyncio would log this task's cancel)
        finally:
            self._disconnect(conn)

    async def _admit(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """A TCP connection's token; it is no client (nor keeps the daemon from idling) before it."""
        self._unadmitted.add(writer)
        try:
            return await admit(reader, writer, self.endpoint.token, self.auth_timeout_s)
        finally:
            self._unadmitted.discard(writer)

    def _disconnect(self, conn: Connection) -> None:
        """End a connection: cancel its requests, let its queued answers go out (for a while),
        and close its documents once none of its requests is left running. A request still
        queued for a worker finds the connection closed and does nothing."""
        already, idle = conn.close()
        self.connections.pop(conn.id, None)
        if already:
            return
        if idle and not self._stop.is_set():  # a stopping daemon's documents end with it (its workers are shut)
            self._workers.submit(self._close_documents, conn)
        if conn.bytes_moved >= TRIM_AFTER_BYTES:
            self._trim.large_request_done()  # glibc keeps the freed pages of its frames otherwise

    def _close_documents(self, conn: Connection) -> None:
        for key in list(conn.documents):
            self.engine.close(key)  # blocks stay in the prefix cache: a reconnect re-finds them
        conn.documents.clear()

    def _send(self, conn: Connection, frame: dict[str, Any]) -> None:
        """Queue `frame` for the client (on the event loop)."""
        self._queue(conn, encoded(frame))

    def _send_threadsafe(self, conn: Connection, frame: dict[str, Any]) -> None:
        """Queue `frame` from a worker thread, encoded there rather than on the event loop."""
        if not conn.closed:
            with contextlib.suppress(RuntimeError):  # the loop is gone: the daemon is stopping
                self._loop.call_soon_threadsafe(self._queue, conn, encoded(frame))

    def _queue(self, conn: Connection, data: bytes) -> None:
        if not conn.queue(data):  # too much unread: the connection was dropped
            self._disconnect(conn)

    def _dispatch(self, conn: Connection, message: dict[str, Any]) -> None:
        request_id = message.get("id")
        try:
            if not isinstance(request_id, int) or isinstance(request_id, bool):
                raise InvalidRequestError("field 'id' must be an integer")
            op = require(message, "op", str)
            handler = getattr(self, f"_op_{op}", None)
            if handler is None:
                raise InvalidRequestError(f"unknown op {shown(op)}")
            if op in _BLOCKING_OPS:  # they take the engine lock, held through each step: never on the event loop
                if request_id in conn.cancels:
                    raise InvalidRequestError(f"request id {request_id} is already in flight")
                flag = conn.cancels[request_id] = threading.Event()
                conn.request_started()
                self._workers.submit(self._run_blocking, conn, request_id, handler, message, flag)
            else:
                reply = handler(conn, message)
                if reply is not None:
                    self._send(conn, {"id": request_id, "type": "result", **reply})
        except LoopcoderError as exc:
            self._send(conn, error_frame(request_id, exc))

    def _run_blocking(self, conn: Connection, request_id: int, handler, message: dict, flag: threading.Event) -> None:
        frame = None
        try:
            if not conn.closed:  # else its client is gone: nothing to do, no one to answer
                reply = handler(conn, message, request_id, flag)
                frame = {"id": request_id, "type": "result", **reply}
        except Exception as exc:  # every failure goes back to its requester; the daemon lives on
            if not isinstance(exc, LoopcoderError):
                log.exception("request %s failed", request_id)
            frame = error_frame(request_id, exc)
        finally:
            conn.cancels.pop(request_id, None)
            if conn.request_finished():  # the connection ended while this ran: its documents end now
                self._close_documents(conn)
        if frame is not None:
            self._send_threadsafe(conn, frame)

    # -- ops ------------------------------------------------------------------------------

    def _op_hello(self, conn: Connection, message: dict) -> dict:
        client = require(message, "client", str, "")
        if client:
            conn.client = f"{client}#{conn.id}"
        cfg = self.engine.model_config
        return {"protocol": PROTOCOL_VERSION, "server": package_version(), "connection": conn.id, "pid": os.getpid(),
                "model": {"name": self.model_name, "path": self.model_path, "model_type": cfg.model_type, "vocab_size": cfg.vocab_size,
                          "max_position_embeddings": cfg.max_position_embeddings,
                          "device": self.engine.config.device, "dtype": str(self.engine.config.dtype)},
                "tokenizer": self._tokenizer_state}

    def _op_open(self, conn: Connection, message: dict, request_id: int, flag: threading.Event) -> dict:
        key = conn.key(require(message, "key", str))
        conn.documents.add(key)
        self.engine.open(key)
        return {}

    def _op_close(self, conn: Connection, message: dict, request_id: int, flag: threading.Event) -> dict:
        key = conn.key(require(message, "key", str))
        keep_cached = require(message, "keep_cached", bool, True)
        conn.documents.discard(key)
        self.engine.close(key, keep_cached=keep_cached)
        return {}

    def _op_sync(self, conn: Connection, message: dict, request_id: int, flag: threading.Event) -> dict:
        key = conn.key(require(message, "key", str))
        ids = token_ids(message)
        priority = _priority(message, Priority.BACKGROUND)
        conn.documents.add(key)
        usage = self.engine.prefill(key, ids, flag.is_set, priority=priority, client=conn.client)
        return {"usage": asdict(usage)}

    def _op_generate(self, conn: Connection, message: dict, request_id: int, flag: threading.Event) -> dict:
        key = conn.key(require(message, "key", str))
        ids = token_ids(message)
        params = params_from_wire(require(message, "params", dict))
        healed_text = require(message, "healed_text", str, "")
        stream = require(message, "stream", bool, False)
        stop_when = None
        dedent = require(message, "stop_dedent", dict, None)
        if dedent is not None:
            stop_when = DedentStop(require(dedent, "indent", int), require(dedent, "line_start", str, ""))
        def stream_token(token: int, text: str) -> None:
            self._send_threadsafe(conn, {"id": request_id, "type": "chunk", "token": token, "text": text})

        on_token = stream_token if stream else None
        conn.documents.add(key)
        result = self.engine.generate_for(key, ids, params, on_token, flag.is_set, healed_text=healed_text,
                                          stop_when=stop_when, priority=_priority(message, Priority.INTERACTIVE),
                                          client=conn.client)
        self.requests_served += 1
        if result.timings.first_token_s:
            self.latencies.append((result.timings.first_token_s, result.timings.total_s))
        return {"token_ids": result.token_ids, "text": result.text, "finish_reason": str(result.finish_reason),
                "usage": asdict(result.usage), "timings": asdict(result.timings)}

    def _op_cancel(self, conn: Connection, message: dict) -> dict:
        target = require(message, "target", int)
        flag = conn.cancels.get(target)
        if flag is not None:
            flag.set()
        return {"cancelled": flag is not None}

    def _op_stats(self, conn: Connection, message: dict, request_id: int, flag: threading.Event) -> dict:
        stats = dict(self.engine.stats())
        first = [f for f, _ in self.latencies]
        total = [t for _, t in self.latencies]
        stats.update({
            "model": self.model_name, "device": self.engine.config.device, "dtype": str(self.engine.config.dtype),
            "clients": sorted(c.client for c in self.connections.values()),
            "uptime_s": time.time() - self.started, "requests": self.requests_served,
            "first_token_p50_s": statistics.median(first) if first else None,
            "total_p50_s": statistics.median(total) if total else None, "pid": os.getpid(),
        })
        if self.ranks is not None:
            stats.update(self.ranks.stats())
        return {"stats": stats}

    def _op_shutdown(self, conn: Connection, message: dict) -> dict:
        self._server.close()  # no new client reaches a daemon on its way out: they start another
        self._loop.call_later(0.05, self._stop.set)  # after the reply goes out
        return {}


def _priority(message: dict, default: Priority) -> Priority:
    name = require(message, "priority", str, default.name.lower())
    try:
        return Priority[name.upper()]
    except KeyError:
        raise InvalidRequestError(f"unknown priority {shown(name)}: use interactive, action or background") from None


def run(engine: Engine, socket_path: Path, *, model_name: str = "", model_path: str = "",
        idle_timeout_s: float | None = None, http: tuple[str, int] | None = None, http_token: str | None = None,
        http_max_body: int | None = None, ranks: FollowerRanks | None = None, transport: str | None = None) -> None:
    """Serve until SIGTERM/SIGINT, a `shutdown` request, the idle timeout or (tensor
    parallel) a follower rank's death, which raises EngineUnavailableError once stopped."""
    with contextlib.suppress(AttributeError, ValueError, RuntimeError):  # no SIGUSR1 (Windows), or not the main thread
        faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1 PID`: every thread's stack to the log
    try:
        asyncio.run(EngineServer(engine, socket_path, model_name=model_name, model_path=model_path,
                                 idle_timeout_s=idle_timeout_s, http=http, http_token=http_token,
                                 http_max_body=http_max_body, ranks=ranks, transport=transport).serve())
    finally:
        if ranks is not None:
            ranks.stop(engine.runner)
