"""The caller's watch over one eval sandbox run, while the launcher and its program live.

It reads the run's stdout and stderr without blocking, keeping the head and the tail of
each within a bound (`Capture`), until the launcher exits or the wall-clock deadline
passes; then it kills the run's whole process group and reads the launcher's report.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import time

_TICK_S = 0.05  # how often a quiet program is checked for having exited
_DRAIN_S = 0.2  # output still read once the program has gone or been killed
_CHUNK_BYTES = 1 << 16
_RECENT_BYTES = 1024  # of stderr, where a MemoryError shows


class Capture:
    """The head and the tail of a stream, within `limit` bytes; what lies between is only counted."""

    def __init__(self, limit: int) -> None:
        self.tail_limit = min(4096, limit // 4)
        self.head_limit = limit - self.tail_limit
        self.head, self.tail, self.recent, self.total = bytearray(), bytearray(), b"", 0

    def feed(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self.head_limit - len(self.head)
        self.head += chunk[:room]
        self.tail += chunk[max(room, 0):]
        del self.tail[: max(0, len(self.tail) - self.tail_limit)]
        self.recent = (self.recent + chunk)[-_RECENT_BYTES:]

    def text(self) -> str:
        dropped = self.total - len(self.head) - len(self.tail)
        marker = f"\n[... {dropped} bytes truncated ...]\n" if dropped else ""
        return self.head.decode("utf-8", "replace") + marker + self.tail.decode("utf-8", "replace")


def follow(proc: subprocess.Popen, captures: tuple[Capture, Capture], deadline: float) -> bool:
    """Reads the output until the launcher exits or the deadline passes; returns whether it timed out."""
    with selectors.DefaultSelector() as selector:
        for stream, capture in zip((proc.stdout, proc.stderr), captures):
            os.set_blocking(stream.fileno(), False)
            selector.register(stream, selectors.EVENT_READ, capture)
        _pump(selector, deadline, stop=lambda: _has_exited(proc.pid))
        timed_out = not _wait_for_exit(proc.pid, deadline)
        # Before reaping the launcher, so that its process group id cannot have been reused.
        kill_group(proc.pid)
        _pump(selector, time.monotonic() + _DRAIN_S)
    proc.wait()
    proc.stdout.close()
    proc.stderr.close()
    return timed_out


def _pump(selector: selectors.BaseSelector, until: float, stop=None) -> None:
    while selector.get_map() and not (stop and stop()):
        remaining = until - time.monotonic()
        if remaining <= 0:
            return
        for key, _ in selector.select(min(remaining, _TICK_S)):
            chunk = os.read(key.fd, _CHUNK_BYTES)
            if chunk:
                key.data.feed(chunk)
            else:
                selector.unregister(key.fileobj)


def _has_exited(pid: int) -> bool:
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def _wait_for_exit(pid: int, until: float) -> bool:
    pause = 0.001
    while not _has_exited(pid):
        if time.monotonic() >= until:
            return False
        time.sleep(pause)
        pause = min(pause * 2, _TICK_S)
    return True


def kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # every process of the run has already gone


def read_report(fd: int) -> dict:
    """The launcher's notes: {"layers": {...}}, {"error": "..."}, {"signal": N}, one JSON object a line."""
    os.set_blocking(fd, False)
    data = b""
    while True:
        try:
            chunk = os.read(fd, _CHUNK_BYTES)
        except BlockingIOError:  # a writer outlived the launcher; what it wrote is already here
            break
        if not chunk:
            break
        data += chunk
    report: dict = {}
    for line in data.decode("utf-8", "replace").splitlines():
        for key, value in json.loads(line).items():
            if key == "error":
                report.setdefault("error", []).append(value)
            else:
                report[key] = value
    return report
