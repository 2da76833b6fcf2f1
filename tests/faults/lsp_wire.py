"""Talking to a real `loopcoder lsp` in raw bytes: a subprocess on stdio or TCP, or `build_server`
in a thread over pipes. Every wait has a timeout, so a server that never answers fails the test
instead of hanging it."""

from __future__ import annotations

import json
import os
import queue
import re
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from typing import Any, Callable

ANSWER_TIMEOUT_S = 10.0
SERVER = [sys.executable, "-m", "loopcoder.lsp.cli", "lsp", "--no-prewarm"]
NO_MODEL = {"prewarm": False}  # initializationOptions; a client that never sends `initialized` loads no model


def frame(message: Any, eol: bytes = b"\r\n") -> bytes:
    body = json.dumps(message).encode()
    return b"Content-Length: %d%s%s%s" % (len(body), eol, eol, body)


def request_bytes(msg_id: int | str, method: str, params: Any = None, eol: bytes = b"\r\n") -> bytes:
    message = {"jsonrpc": "2.0", "id": msg_id, "method": method}
    if params is not None:
        message["params"] = params
    return frame(message, eol)


def hover_params(line: Any = 0, character: Any = 0, uri: str = "file:///work/nowhere.py") -> dict[str, Any]:
    return {"textDocument": {"uri": uri}, "position": {"line": line, "character": character}}


class WireClient:
    """The client's end of a byte stream: `send` raw bytes, `answer(id)` waits for that response.

    A thread reads the server's frames (strictly: the server's output must be well formed).
    Responses are counted per id, so a test can check no request was answered twice."""

    def __init__(self, write: Callable[[bytes], None], read: Callable[[int], bytes], close: Callable[[], None]):
        self._write, self._read, self._close = write, read, close
        self._responses: dict[Any, queue.Queue] = {}
        self._lock = threading.Lock()
        self.answers: Counter = Counter()
        self.notifications: list[dict[str, Any]] = []
        self.broken: str | None = None  # why the server's output could not be read
        self._ended = threading.Event()
        self._next_id = 1000
        threading.Thread(target=self._read_frames, daemon=True).start()

    def send(self, data: bytes) -> None:
        self._write(data)

    def new_id(self) -> int:
        with self._lock:
            self._next_id += 1
            return self._next_id

    def request(self, method: str, params: Any = None, timeout: float = ANSWER_TIMEOUT_S) -> dict[str, Any]:
        msg_id = self.new_id()
        self.send(request_bytes(msg_id, method, params))
        return self.answer(msg_id, timeout)

    def notify(self, method: str, params: Any) -> None:
        self.send(frame({"jsonrpc": "2.0", "method": method, "params": params}))

    def answer(self, msg_id: Any, timeout: float = ANSWER_TIMEOUT_S) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ended = self._ended.is_set()  # read before the queue: an answer may come just before the end
            try:
                return self._queue(msg_id).get(timeout=0.05)
            except queue.Empty:
                if ended:
                    raise AssertionError(f"no answer to request {msg_id!r}: the server's output ended "
                                         f"({self.broken or 'end of stream'})") from None
        raise AssertionError(f"no answer to request {msg_id!r} within {timeout} s")

    def logged(self, text: str) -> list[str]:
        """window/logMessage texts containing `text`."""
        return [n["params"]["message"] for n in list(self.notifications)
                if n.get("method") == "window/logMessage" and text in n["params"]["message"]]

    def close(self) -> None:
        self._close()

    def _queue(self, msg_id: Any) -> queue.Queue:
        with self._lock:
            return self._responses.setdefault(msg_id, queue.Queue())

    def _read_frames(self) -> None:
        buffer = b""
        try:
            while True:
                match = re.match(rb"Content-Length: (\d+)\r\n(?:[^\r\n]+\r\n)*\r\n", buffer)
                if match is None or len(buffer) < match.end() + int(match[1]):
                    if len(buffer) > 64 and match is None and b"\r\n\r\n" in buffer:
                        raise ValueError(f"bad header from the server: {buffer[:80]!r}")
                    data = self._read(1 << 16)
                    if not data:
                        return
                    buffer += data
                    continue
                end = match.end() + int(match[1])
                message = json.loads(buffer[match.end():end])
                buffer = buffer[end:]
                if "method" in message:
                    self.notifications.append(message)
                    del self.notifications[:-500]  # keep the latest
                else:
                    self.answers[message.get("id")] += 1
                    self._queue(message.get("id")).put(message)
        except (OSError, ValueError) as e:
            self.broken = repr(e)
        finally:
            self._ended.set()


class ServerProcess:
    """`loopcoder lsp ...` in a subprocess; its stderr is collected in `stderr_lines`."""

    def __init__(self, *args: str):
        self.process = subprocess.Popen([*SERVER, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, bufsize=0)
        self.stderr_lines: list[str] = []
        threading.Thread(target=self._drain_stderr, daemon=True).start()

    def stdio_client(self) -> WireClient:
        stdin, stdout = self.process.stdin, self.process.stdout  # unbuffered: a read returns what has arrived
        return WireClient(lambda data: write_all(stdin.fileno(), data), stdout.read, stdin.close)

    def alive(self) -> bool:
        return self.process.poll() is None

    def stderr_with(self, text: str) -> list[str]:
        return [line for line in list(self.stderr_lines) if text in line]

    def wait_for_stderr(self, text: str, timeout: float = ANSWER_TIMEOUT_S) -> list[str]:
        deadline = time.monotonic() + timeout
        while not (found := self.stderr_with(text)) and time.monotonic() < deadline:
            time.sleep(0.02)
        return found

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)

    def _drain_stderr(self) -> None:
        for raw in iter(self.process.stderr.readline, b""):
            self.stderr_lines.append(raw.decode(errors="replace").rstrip())


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tcp_client(port: int, timeout: float = ANSWER_TIMEOUT_S) -> WireClient:
    """A connection to a server that is starting on 127.0.0.1:`port` (retried until `timeout`)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn = socket.create_connection(("127.0.0.1", port), timeout=1)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    conn.settimeout(None)

    def close() -> None:
        try:
            conn.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        conn.close()

    return WireClient(conn.sendall, conn.recv, close)


class ThreadedServer:
    """`build_server(...)` started on a pair of pipes in a thread of this process, so a test can look at
    its state (`server.documents`) after the wire traffic."""

    def __init__(self, server):
        self.server = server
        to_server_r, to_server_w = os.pipe()
        from_server_r, from_server_w = os.pipe()
        stdin, self._stdout = os.fdopen(to_server_r, "rb"), os.fdopen(from_server_w, "wb")
        self._to_server = to_server_w
        self.thread = threading.Thread(target=server.start_io, args=(stdin, self._stdout), daemon=True)
        self.thread.start()
        self.client = WireClient(lambda data: write_all(to_server_w, data), lambda n: os.read(from_server_r, n),
                                 lambda: os.close(to_server_w))

    def stop(self) -> None:
        self.client.close()  # end of stream: the read loop returns and the server shuts down
        self.thread.join(timeout=10)
        assert not self.thread.is_alive(), "the server did not stop at the end of its input"
        self._stdout.close()  # and the client's reader sees the end of the server's output
