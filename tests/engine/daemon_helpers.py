"""Start a real `loopcoder engine` process for a test, and stop it whatever happens."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from loopcoder.engine.serving.client import DaemonClient

READY_TIMEOUT_S = 120.0


def engine_command(socket_path: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "loopcoder.lsp.cli", "engine", "--socket", str(socket_path), "--threads", "1", *extra]


def wait_ready(process: subprocess.Popen, socket_path: Path, log_path: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"engine exited with {process.returncode}: {log_path.read_text()[-2000:]}")
        if socket_path.exists():
            try:
                DaemonClient(socket_path, client_name="readiness probe").close_connection()
                return
            except Exception:
                pass
        time.sleep(0.1)
    raise RuntimeError(f"engine not ready after {READY_TIMEOUT_S} s: {log_path.read_text()[-2000:]}")


@contextmanager
def running_engine(directory: Path, *extra: str):
    """Yield (process, socket path); the process is killed on exit."""
    socket_path = directory / "engine.sock"
    log_path = directory / "engine.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(engine_command(socket_path, *extra), stdout=log, stderr=log,
                                   env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        wait_ready(process, socket_path, log_path)
        yield process, socket_path
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
