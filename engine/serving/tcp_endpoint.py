"""The engine daemon on loopback TCP, where this OS has no unix sockets (Windows) or the
transport is forced (LOOPCODER_DAEMON_TRANSPORT=tcp): its endpoint file and its token.

The daemon listens on 127.0.0.1, on a port the OS picks, and writes the **endpoint file**
where its unix socket would be (the `--socket` path): one JSON map, `{"transport": "tcp",
"host", "port", "token", "pid"}`, made 0600 at its creation (mkstemp) and renamed into
place, so a reader never sees half of it and never a copy with wider rights. Every user of
the machine can reach the port; only this user can read the file, so the token is what keeps
the others out (the convention of Jupyter's connection files and VS Code's servers).

The handshake (docs/protocol.md, Transport): the first frame on a connection is
`{"v": 1, "id": 0, "op": "auth", "token": T}`. The daemon answers a `result` and serves the
connection, or answers an `unauthorized` error and closes it. A first frame that is not a
frame, is larger than MAX_AUTH_FRAME_BYTES, or does not come within AUTH_TIMEOUT_S is
refused the same way; each refusal is logged with the peer and why, and costs the daemon
nothing more. Tokens are compared in constant time (access.token_matches).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import secrets
import socket
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import EngineUnavailableError, LoopcoderError
from .access import check_token, is_loopback, not_private, token_matches
from .protocol import FrameDecoder, ProtocolError, decode_body, encode

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
AUTH_TIMEOUT_S = 10.0  # for a new connection's first frame, the token
MAX_AUTH_FRAME_BYTES = 4096  # an unauthenticated peer never makes the daemon buffer more
MAX_ENDPOINT_FILE_BYTES = 4096
REFUSAL_LINGER_S = 1.0  # after refusing, what the peer still sends is read and dropped this long (at most
REFUSAL_DRAIN_BYTES = 1 << 16  # this much), so that closing sends the refusal and a FIN, not a reset that may discard it
UNAUTHORIZED = "unauthorized"  # the error code of a refused connection


class TokenRefused(ConnectionError):
    """What listens on the endpoint's port did not take its token: not the engine that wrote
    the file (a stale file), or not a loopcoder engine at all."""


@dataclass(frozen=True)
class Endpoint:
    port: int
    token: str
    pid: int  # the daemon's, for messages about a stale file
    host: str = HOST

    @staticmethod
    def new(port: int) -> Endpoint:
        return Endpoint(port, secrets.token_urlsafe(32), os.getpid())


def write_endpoint(path: Path, endpoint: Endpoint) -> None:
    """The endpoint file at `path`, private from its creation and whole when it appears; it
    replaces what was there (a dead engine's file, or one with wider rights)."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # 0600, O_EXCL
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"transport": "tcp", **asdict(endpoint)}, f)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def read_endpoint(path: Path) -> Endpoint:
    """The endpoint the file at `path` names. OSError when there is no file; EngineUnavailableError
    for one that is not this user's alone (others may know its token, or have written it to
    send our code elsewhere: it is refused, never used) or is not an endpoint file."""
    with open(path, "rb") as f:
        problem = not_private(os.fstat(f.fileno()))
        if problem:
            raise EngineUnavailableError(
                f"the engine's endpoint file {path} {problem}, so others may know its token or have written it: "
                f"not used. Delete it (the next engine writes a new one, private to you)")
        raw = f.read(MAX_ENDPOINT_FILE_BYTES + 1)
    try:
        data = json.loads(raw)
        endpoint = Endpoint(data["port"], data["token"], data["pid"], data["host"])
        check_token(endpoint.token, "the endpoint file")
        fields_ok = (data.get("transport") == "tcp" and type(endpoint.port) is int and 0 < endpoint.port < 65536
                     and type(endpoint.pid) is int and is_loopback(endpoint.host))
    except (ValueError, KeyError, TypeError, AttributeError, LoopcoderError):
        fields_ok = False
    if not fields_ok or len(raw) > MAX_ENDPOINT_FILE_BYTES:
        raise EngineUnavailableError(
            f"{path} is not an engine's endpoint file (a JSON map: transport \"tcp\", a loopback host, port, "
            f"token, pid): delete it, or choose another --socket")
    return endpoint


def connect(path: Path, timeout: float) -> socket.socket:
    """A connection to the engine whose endpoint file is `path`, the token taken. OSError
    (TokenRefused among them) when no engine of that file answers: a stale file."""
    endpoint = read_endpoint(path)
    where = f"{endpoint.host}:{endpoint.port}"
    try:
        sock = socket.create_connection((endpoint.host, endpoint.port), timeout=timeout)
    except OSError as exc:
        raise OSError(exc.errno or errno.ECONNREFUSED,
                      f"nothing answers on {where}, which {path} names: the engine that wrote it "
                      f"(pid {endpoint.pid}) is gone or stopping ({exc.strerror or exc})") from None
    try:
        sock.sendall(encode({"id": 0, "op": "auth", "token": endpoint.token}))
        answer = _first_frame(sock, where)
        if answer.get("type") != "result":
            raise TokenRefused(f"the server on {where} refused the token of {path} "
                               f"({str(answer.get('message', ''))[:200]}): not the engine that wrote it")
    except BaseException:
        sock.close()
        raise
    sock.settimeout(None)
    return sock


def _first_frame(sock: socket.socket, where: str) -> dict:
    decoder = FrameDecoder(MAX_AUTH_FRAME_BYTES)
    while True:
        data = sock.recv(MAX_AUTH_FRAME_BYTES)
        if not data:
            raise ConnectionResetError(errno.ECONNRESET, f"the server on {where} closed the connection "
                                                         "before answering the token")
        try:
            frames = decoder.feed(data)
        except ProtocolError as exc:
            raise TokenRefused(f"the server on {where} is not a loopcoder engine: {exc}") from None
        if frames:
            return frames[0]


async def admit(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, token: str,
                timeout: float = AUTH_TIMEOUT_S) -> bool:
    """The daemon's side of the handshake: True once the peer's first frame carried `token`
    (answered with a result); else the peer gets an `unauthorized` error, is closed and
    logged, and False. Never raises for anything the peer does."""
    request_id = None
    try:
        frame = await asyncio.wait_for(_read_auth_frame(reader), timeout)
        request_id = frame.get("id") if type(frame.get("id")) is int else None
        if frame.get("op") != "auth":
            reason = f"its first frame is op {str(frame.get('op'))[:40]!r}, not auth"
        elif "token" not in frame:
            reason = "no token"
        elif not token_matches(frame["token"], token):
            reason = "a wrong token"
        else:
            writer.write(encode({"id": request_id, "type": "result"}))
            return True
    except asyncio.TimeoutError:
        reason = f"no token within {timeout:g} s"
    except ProtocolError as exc:
        reason = f"not a token frame: {exc}"
    except (asyncio.IncompleteReadError, ConnectionError):
        reason = "it closed the connection before sending the token"
    log.warning("refused a connection from %s: %s", writer.get_extra_info("peername"), reason)
    with contextlib.suppress(Exception):  # the peer may be gone already, or keep sending past the linger
        writer.write(encode({"id": request_id, "type": "error", "code": UNAUTHORIZED,
                             "message": f"refused: {reason}. This engine serves a connection whose first frame is "
                                        "{op: auth, token}, the token of its endpoint file"}))
        writer.write_eof()
        await asyncio.wait_for(_drain(reader), REFUSAL_LINGER_S)
    writer.close()
    return False


async def _drain(reader: asyncio.StreamReader) -> None:
    """Read and drop what a refused peer sends, until it closes or REFUSAL_DRAIN_BYTES."""
    dropped = 0
    while dropped < REFUSAL_DRAIN_BYTES:
        data = await reader.read(REFUSAL_DRAIN_BYTES)
        if not data:
            return
        dropped += len(data)


async def _read_auth_frame(reader: asyncio.StreamReader) -> dict:
    """The first frame, read to its last byte and no further (the requests after it are the
    connection's); ProtocolError for anything else, a long one included."""
    length = int.from_bytes(await reader.readexactly(4), "big")
    if length > MAX_AUTH_FRAME_BYTES:
        raise ProtocolError(f"a first frame of {length} bytes, over the token frame's {MAX_AUTH_FRAME_BYTES}")
    return decode_body(await reader.readexactly(length))
