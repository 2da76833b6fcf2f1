"""Where the engine daemon listens: the default path, the transport, a connection to
whatever listens there, and the lock that lets one engine own the path. Light, so that
clients find the daemon without importing it.

The path is a unix socket where the OS has them (Linux, macOS), and otherwise (Windows), or
with LOOPCODER_DAEMON_TRANSPORT=tcp, the endpoint file of a daemon on loopback TCP
(tcp_endpoint.py). A client needs no setting: it connects by what it finds at the path.
"""

from __future__ import annotations

import errno
import os
import socket
import sys
from pathlib import Path

from filelock import FileLock, Timeout

from ..errors import EngineBusyError, InvalidRequestError, LoopcoderError
from . import tcp_endpoint

TRANSPORT_ENV = "LOOPCODER_DAEMON_TRANSPORT"
TRANSPORTS = ("unix", "tcp")


def default_socket_path() -> Path:
    """$LOOPCODER_SOCKET; else $XDG_RUNTIME_DIR/loopcoder/engine.sock; on Windows
    %LOCALAPPDATA%\\loopcoder\\engine.sock; else /tmp/loopcoder-<uid>/engine.sock."""
    override = os.environ.get("LOOPCODER_SOCKET")
    if override:
        return Path(override)
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and Path(runtime).is_dir():
        base = Path(runtime) / "loopcoder"
    elif sys.platform == "win32":  # the user's own local app data: private to them by its ACL
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local") / "loopcoder"
    else:
        base = Path(f"/tmp/loopcoder-{os.getuid()}")
    return base / "engine.sock"


def unix_sockets_available() -> bool:
    """Whether this Python serves unix sockets through asyncio (not on Windows, even where the
    socket module knows AF_UNIX)."""
    return hasattr(socket, "AF_UNIX") and sys.platform != "win32"


def daemon_transport() -> str:
    """How a daemon about to start listens: $LOOPCODER_DAEMON_TRANSPORT (unix or tcp), else a
    unix socket where this OS has them, else loopback TCP with a token."""
    forced = os.environ.get(TRANSPORT_ENV, "").strip().lower()
    if forced and forced not in TRANSPORTS:
        raise InvalidRequestError(f"{TRANSPORT_ENV}={forced!r}: use unix or tcp (or leave it unset)")
    if forced == "unix" and not unix_sockets_available():
        raise InvalidRequestError(f"{TRANSPORT_ENV}=unix: this system has no unix sockets; use tcp")
    return forced or ("unix" if unix_sockets_available() else "tcp")


def open_connection(path: Path, timeout: float) -> socket.socket:
    """A connection to the engine at `path`: the TCP endpoint a regular file names (its token
    shown), else the unix socket. OSError when nothing answers there; EngineUnavailableError
    for an endpoint file that must not be used (tcp_endpoint.read_endpoint)."""
    if path.is_file():
        return tcp_endpoint.connect(path, timeout)
    if not unix_sockets_available():
        raise FileNotFoundError(errno.ENOENT, f"no endpoint file at {path}")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(path))
    except OSError:
        sock.close()
        raise
    sock.settimeout(None)
    return sock


def answers(path: Path) -> bool:
    """Whether an engine accepts connections at `path` (a unix socket, or an endpoint file whose
    engine takes its token)."""
    try:
        open_connection(path, timeout=1.0).close()
    except (OSError, LoopcoderError):
        return False
    return True


def _lock_path(socket_path: Path) -> Path:
    return socket_path.with_name(socket_path.name + ".lock")


def socket_claimed(socket_path: Path) -> bool:
    """Whether an engine holds the socket's lock: one is loading or serving, or still exiting."""
    path = _lock_path(socket_path)
    if not path.exists():
        return False
    probe = FileLock(path)
    try:
        probe.acquire(timeout=0)
    except Timeout:
        return True
    probe.release()
    return False


def claim_socket(socket_path: Path) -> FileLock:
    """Take the socket's lock (`SOCKET.lock`, through filelock: flock on POSIX, LockFileEx on
    Windows) for the life of this process, before the model loads; returns the lock, to be
    kept. Raises EngineBusyError when another engine holds it: two clients that each autostart
    an engine at once then start one, not two (the loser exits at once, the winner serves both)."""
    directory = socket_path.parent
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    lock = FileLock(_lock_path(socket_path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise EngineBusyError(f"another engine is starting or running on {socket_path}") from None
    return lock
