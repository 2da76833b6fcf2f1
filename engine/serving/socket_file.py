"""Where the engine daemon listens: the socket's default path, whether something answers
on it, and the lock that lets one engine own it. Light, so that clients find the daemon
without importing it."""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path

from ..errors import EngineBusyError


def default_socket_path() -> Path:
    """$XDG_RUNTIME_DIR/loopcoder/engine.sock, or /tmp/loopcoder-<uid>/engine.sock."""
    override = os.environ.get("LOOPCODER_SOCKET")
    if override:
        return Path(override)
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    base = Path(runtime) / "loopcoder" if runtime and Path(runtime).is_dir() else Path(f"/tmp/loopcoder-{os.getuid()}")
    return base / "engine.sock"


def answers(path: Path) -> bool:
    """Whether something accepts connections on the unix socket `path`."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(str(path))
        except OSError:
            return False
        return True


def _lock_path(socket_path: Path) -> Path:
    return socket_path.with_name(socket_path.name + ".lock")


def socket_claimed(socket_path: Path) -> bool:
    """Whether an engine holds the socket's lock: one is loading or serving, or still exiting."""
    try:
        lock = open(_lock_path(socket_path), "rb")
    except FileNotFoundError:
        return False
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(lock, fcntl.LOCK_UN)
        return False


def claim_socket(socket_path: Path):
    """Take the socket's lock (`SOCKET.lock`, flock) for the life of this process, before the
    model loads; returns the open lock file, to be kept. Raises EngineBusyError when another
    engine holds it: two clients that each autostart an engine at once then start one, not
    two (the loser exits at once, the winner serves both)."""
    directory = socket_path.parent
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    lock = open(_lock_path(socket_path), "a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise EngineBusyError(f"another engine is starting or running on {socket_path}") from None
    return lock
