"""Rendering an app into a folder and running it as a user would: the manifest's `run` command."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx

from loopcoder.lsp.features.scaffold import MANIFEST, build, target_folder, write_files


def render_into(folder: Path, spec: dict) -> dict:
    """Write the app for `spec` into `folder`; returns its manifest."""
    write_files(target_folder(folder), build(spec=spec).files)
    return json.loads((folder / MANIFEST).read_text(encoding="utf-8"))


def venv_env() -> dict[str, str]:
    """This interpreter's environment, with its bin folder first on PATH: `python` is the one the tests run."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.pop("PYTHONPATH", None)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running(folder: Path, manifest: dict, timeout: float = 60.0):
    """Start the app with the manifest's run command on a free port; yields its base URL."""
    port = free_port()
    log_path = folder / "server.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(manifest["run"].format(port=port), shell=True, cwd=folder, env=venv_env(),
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise AssertionError(f"the app exited with {process.returncode}:\n{log_path.read_text()}")
            try:
                if httpx.get(f"{base}/", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"the app did not answer within {timeout} s:\n{log_path.read_text()}")
            time.sleep(0.2)
        yield base
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
