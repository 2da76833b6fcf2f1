"""The one interface front ends use: an `Engine` in process, or the daemon across its socket.

`DaemonClient` has the `EngineAPI` methods of `Engine` (generate_for, generate_json,
prefill, close, stats, plus `tokenizer` and `model_config`) and speaks `engine.protocol`
to `loopcoder engine`, on its unix socket or, where the path holds an endpoint file, on
loopback TCP with the file's token (socket_file.open_connection). It is thread-safe: each call is one request on the shared
connection, and a reader thread routes the answers to their callers.

- `cancelled()` is polled while a request waits; the first True sends a `cancel`.
- `on_token` gets the streamed chunks on the caller's thread.
- A broken connection fails every request in flight with EngineUnavailableError at
  once (never a hang); the next call reconnects, starting the daemon if `autostart` is
  set, and re-sends the documents this client had (their last prompts, prefilled in the
  background) so the warm state comes back.
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..api import EngineAPI, GenerationResult, Priority, RemoteModelConfig, Timings, Usage, as_id_list
from ..errors import EngineBusyError, EngineUnavailableError, InvalidRequestError
from .protocol import FrameDecoder, ProtocolError, encode, error_from_frame, params_to_wire
from .socket_file import open_connection, socket_claimed
from ..sampling import DedentStop, FinishReason, SamplingParams
from ..tokenizer import Tokenizer

log = logging.getLogger(__name__)

POLL_S = 0.02  # how often a waiting caller checks its cancel flag
RETRY_S = 0.05  # between connection attempts to a daemon that is going away
_LOST = object()  # queued to every waiter when the connection breaks


@dataclass(frozen=True)
class AutoStart:
    """How to start the daemon when none answers: `loopcoder engine` with these arguments."""

    args: tuple[str, ...] = ()  # e.g. ("--model", path, "--device", "cpu")
    idle_timeout_s: float = 600.0
    ready_timeout_s: float = 300.0  # model loading included
    log_path: Path | None = None


@dataclass
class _Pending:
    answers: queue.Queue = field(default_factory=queue.Queue)


class DaemonClient(EngineAPI):
    def __init__(self, socket_path: str | Path, *, client_name: str = "", autostart: AutoStart | None = None,
                 connect_timeout_s: float = 5.0) -> None:
        self.socket_path = Path(socket_path)
        self.client_name = client_name or f"{Path(sys.argv[0]).name}:{os.getpid()}"
        self.autostart = autostart
        self.connect_timeout_s = connect_timeout_s
        self.tokenizer: Tokenizer | None = None
        self.model_config: RemoteModelConfig | None = None
        self.server_info: dict[str, Any] = {}
        self._sock: socket.socket | None = None
        self._send_lock = threading.Lock()
        self._connect_lock = threading.Lock()
        self._pending: dict[int, _Pending] = {}
        self._ids = itertools.count(1)
        self._documents: dict[str, list[int]] = {}  # key -> its last prompt, re-sent after a reconnect
        self._lost_reason = "the engine stopped or restarted"
        self.reconnects = 0
        self.started_engine: subprocess.Popen | None = None  # the engine process this client started, if any
        self.connect()

    # -- connection -------------------------------------------------------------------

    def connect(self) -> None:
        """Connect (starting the daemon if allowed), say hello, and restore documents after a reconnect.

        A daemon that is stopping may still accept a connection and then drop it unanswered:
        that counts as no daemon, tried again (and, with autostart, a new one started) until
        `connect_timeout_s` has passed."""
        with self._connect_lock:
            if self._sock is not None:
                return
            deadline = time.monotonic() + self.connect_timeout_s
            while True:
                sock = self._open_socket()
                self._sock = sock
                threading.Thread(target=self._read_loop, args=(sock,), name="loopcoder-engine-reader", daemon=True).start()
                try:
                    hello = self._call({"op": "hello", "client": self.client_name}, reconnect=False)
                    break
                except EngineUnavailableError as exc:  # accepted, then dropped: a daemon on its way out
                    self._drop(sock)
                    if time.monotonic() >= deadline:
                        raise EngineUnavailableError(f"the engine on {self.socket_path} closed the connection "
                                                     f"before answering: {exc}") from None
                    time.sleep(RETRY_S)
                except Exception:
                    self._drop(sock)
                    raise
            self.server_info = hello
            started = self.started_engine
            if started is not None and started.poll() is None and hello.get("pid") != started.pid:
                # Another client's engine answered first (both found none and started one):
                # the one this client started is still loading and would serve nobody.
                log.info("engine %d answered; stopping the engine this client started (%d)", hello.get("pid"), started.pid)
                started.terminate()
            model = hello.get("model") or {}
            self.model_config = RemoteModelConfig(
                model.get("model_type", ""), int(model.get("vocab_size", 0)),
                int(model.get("max_position_embeddings", 0)), model.get("name", ""), model.get("device", ""),
                model.get("dtype", ""))
            if self.tokenizer is None and hello.get("tokenizer"):
                self.tokenizer = Tokenizer.from_state(hello["tokenizer"])
            restore = dict(self._documents)
        for key, ids in restore.items():  # warm the documents again, without waiting
            self._send_only({"op": "sync", "key": key, "ids": ids, "priority": "background"})

    def _open_socket(self) -> socket.socket:
        try:
            return self._try_connect()
        except OSError as first:
            if self.autostart is None:
                raise EngineUnavailableError(
                    f"no loopcoder engine answers on {self.socket_path} ({first.strerror or first}); "
                    f"start one with `loopcoder engine start`") from None
        return self._start_daemon()

    def _try_connect(self) -> socket.socket:
        return open_connection(self.socket_path, self.connect_timeout_s)

    def _start_daemon(self) -> socket.socket:
        auto = self.autostart
        log_path = auto.log_path or self.socket_path.with_suffix(".log")
        log_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        command = [sys.executable, "-m", "loopcoder.lsp.cli", "engine", "--socket", str(self.socket_path),
                   "--idle-timeout", str(auto.idle_timeout_s), *auto.args]
        deadline = time.monotonic() + auto.ready_timeout_s
        process = self._spawn(command, log_path)
        while time.monotonic() < deadline:
            try:
                return self._try_connect()
            except OSError:
                pass
            code = process.poll()
            if code is not None:
                try:  # another client's daemon may have won the race for the socket
                    return self._try_connect()
                except OSError:
                    pass
                if code != EngineBusyError.exit_code:
                    raise EngineUnavailableError(f"the engine exited with status {code} while starting: "
                                                 f"{_tail(log_path)} (log: {log_path})")
                if not socket_claimed(self.socket_path):  # the engine that held the socket has exited since
                    process = self._spawn(command, log_path)
            time.sleep(0.1)
        raise EngineUnavailableError(f"the engine did not answer on {self.socket_path} within "
                                     f"{auto.ready_timeout_s:.0f} s (log: {log_path})")

    def _spawn(self, command: list[str], log_path: Path) -> subprocess.Popen:
        """Start `loopcoder engine` (busy: it exits at once when another engine holds the socket)."""
        log.info("starting the engine: %s", " ".join(command))
        # Detached from this process's terminal: its own session (POSIX), its own process group and no console (Windows).
        detached = subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.DETACHED_PROCESS if sys.platform == "win32" else 0
        with open(log_path, "ab") as log_file:
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file,
                                       start_new_session=True, close_fds=True, creationflags=detached)
        self.started_engine = process
        return process

    def _read_loop(self, sock: socket.socket) -> None:
        decoder = FrameDecoder()
        try:
            while True:
                data = sock.recv(1 << 16)
                if not data:
                    break
                for frame in decoder.feed(data):
                    pending = self._pending.get(frame.get("id"))
                    if pending is not None:
                        pending.answers.put(frame)
                    elif frame.get("type") == "error" and frame.get("id") is None:
                        self._lost_reason = f"the engine refused a frame: {frame.get('message')}"
        except (OSError, ProtocolError) as exc:
            if self._sock is sock:  # not closed on purpose by close_connection
                self._lost_reason = f"the connection broke: {exc}"
                log.warning("engine connection broke: %s", exc)
        finally:
            self._drop(sock)

    def _drop(self, sock: socket.socket) -> None:
        with self._send_lock:
            if self._sock is sock:
                self._sock = None
        try:
            sock.close()
        except OSError:
            pass
        for pending in list(self._pending.values()):
            pending.answers.put(_LOST)

    def close_connection(self) -> None:
        sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._drop(sock)

    # -- requests ---------------------------------------------------------------------

    def _send_only(self, message: dict) -> int:
        request_id = next(self._ids)
        self._write({**message, "id": request_id})
        return request_id

    def _write(self, message: dict) -> None:
        frame = encode(message)
        with self._send_lock:
            sock = self._sock
            if sock is None:
                raise EngineUnavailableError("the engine connection is closed")
            try:
                sock.sendall(frame)
            except OSError as exc:
                raise EngineUnavailableError(f"lost the engine connection: {exc}") from None

    def _send_request(self, message: dict, reconnect: bool) -> None:
        """Write a request, connecting first if need be. A connection that a dying daemon drops
        between the hello and the request is made again once: the request never left."""
        for attempt in range(2):
            if reconnect and self._sock is None:
                self.reconnects += 1
                self.connect()
            try:
                return self._write(message)
            except EngineUnavailableError:
                if not reconnect or attempt:
                    raise

    def _call(self, message: dict, *, on_chunk=None, cancelled=None, reconnect: bool = True) -> dict:
        request_id = next(self._ids)
        pending = self._pending[request_id] = _Pending()
        try:
            self._send_request({**message, "id": request_id}, reconnect)
            cancel_sent = False
            while True:
                try:
                    frame = pending.answers.get(timeout=POLL_S)
                except queue.Empty:
                    if cancelled is not None and not cancel_sent and cancelled():
                        cancel_sent = True
                        self._write({"op": "cancel", "target": request_id, "id": next(self._ids)})
                    continue
                if frame is _LOST:
                    raise EngineUnavailableError(
                        f"the engine connection was lost during the request ({message.get('op')}): "
                        f"{self._lost_reason}; the next request reconnects")
                kind = frame.get("type")
                if kind == "chunk":
                    if on_chunk is not None:
                        on_chunk(frame)
                elif kind == "result":
                    return frame
                elif kind == "error":
                    raise error_from_frame(frame)
        finally:
            self._pending.pop(request_id, None)

    # -- EngineAPI ------------------------------------------------------------------------

    def open(self, key: str) -> None:
        self._call({"op": "open", "key": key})

    def close(self, key: str, keep_cached: bool = True) -> None:
        self._documents.pop(key, None)
        if self._sock is None:
            return  # nothing to close on an engine we are not connected to
        self._call({"op": "close", "key": key, "keep_cached": keep_cached})

    def prefill(self, key: str, token_ids: list[int], cancelled=None, *, priority: Priority = Priority.BACKGROUND,
                client: str = "") -> Usage:
        ids = as_id_list(token_ids)
        self._documents[key] = ids
        reply = self._call({"op": "sync", "key": key, "ids": ids, "priority": priority.name.lower()},
                           cancelled=cancelled)
        return Usage(**reply["usage"])

    def generate_for(self, key: str, token_ids: list[int], params: SamplingParams, on_token=None, cancelled=None,
                     *, healed_text: str = "", stop_when=None, priority: Priority = Priority.INTERACTIVE,
                     client: str = "") -> GenerationResult:
        ids = as_id_list(token_ids)
        message: dict[str, Any] = {"op": "generate", "key": key, "ids": ids, "params": params_to_wire(params),
                                   "priority": priority.name.lower(), "stream": on_token is not None}
        if healed_text:
            message["healed_text"] = healed_text
        if stop_when is not None:
            if not isinstance(stop_when, DedentStop):
                raise InvalidRequestError("stop_when must be a DedentStop to cross to the engine daemon, "
                                          f"got {type(stop_when).__name__}")
            message["stop_dedent"] = {"indent": stop_when.indent, "line_start": stop_when.line_start}
        self._documents[key] = ids
        on_chunk = None if on_token is None else (lambda frame: on_token(frame["token"], frame["text"]))
        reply = self._call(message, on_chunk=on_chunk, cancelled=cancelled)
        return GenerationResult(list(reply["token_ids"]), reply["text"], FinishReason(reply["finish_reason"]),
                                Usage(**reply["usage"]), Timings(**reply["timings"]))

    def stats(self) -> dict:
        return self._call({"op": "stats"})["stats"]

    def shutdown(self) -> None:
        """Ask the daemon to exit (every client's requests fail with EngineUnavailableError)."""
        self._call({"op": "shutdown"})


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(text[-lines:]) or "(empty log)"
