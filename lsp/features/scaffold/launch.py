"""From a written app to a running one: `loopcoder scaffold ... --run`, and the manual commands it prints.

The app needs what its requirements.txt lists. `prepare_interpreter` uses this interpreter when
it already has every requirement, else it makes the app's own `.venv` and pip-installs them
there, one requirement at a time, so a failure names the requirement. Then `run_tests` runs the
app's tests and `serve` starts uvicorn and waits until it answers HTTP.

Every subprocess but the server goes through a `Runner`, so that tests can check the commands.
"""

from __future__ import annotations

import errno
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from importlib import metadata
from pathlib import Path
from typing import Callable

from packaging.requirements import InvalidRequirement, Requirement

from loopcoder.engine.errors import InvalidRequestError

REQUIREMENTS = "requirements.txt"
VENV = ".venv"
HOST = "127.0.0.1"
WAIT_SECONDS = 30.0

Runner = Callable[[list[str], Path], int]  # (argv, cwd) -> exit code
Say = Callable[[str], None]


class LaunchError(Exception):
    """A step of --run failed; `code` is the exit code to end with. The app's files stay."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def run_subprocess(argv: list[str], cwd: Path) -> int:
    """The default Runner: the child's output goes straight to this terminal (pip's progress bar too)."""
    return subprocess.run(argv, cwd=cwd).returncode


def venv_python(platform: str = sys.platform) -> str:
    """The app's venv interpreter, relative to the app's folder."""
    return f"{VENV}\\Scripts\\python.exe" if platform == "win32" else f"{VENV}/bin/python"


def manual_commands(folder: Path, port: int = 8000, platform: str = sys.platform) -> str:
    """One shell line that installs, tests and starts the app in a fresh shell, whatever `python` is there."""
    python = venv_python(platform)
    if platform == "win32":
        cd, make = f"cd /d {subprocess.list2cmdline([str(folder)])}", f"py -3 -m venv {VENV}"
    else:
        cd, make = f"cd {shlex.quote(str(folder))}", f"python3 -m venv {VENV}"
    return (f"{cd} && {make} && {python} -m pip install -r {REQUIREMENTS} && {python} -m pytest -q && "
            f"{python} -m uvicorn app:app --host {HOST} --port {port}")


def requirements(text: str) -> list[Requirement]:
    """The requirements of a requirements.txt (comments and blank lines skipped)."""
    found = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            found.append(Requirement(line))
        except InvalidRequirement as e:
            raise InvalidRequestError(f"{REQUIREMENTS}: cannot read {line!r}: {e}") from None
    return found


def missing(wanted: list[Requirement]) -> list[str]:
    """The requirements this interpreter lacks, or has in a version outside their range."""
    lacking = []
    for requirement in wanted:
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        try:
            version = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            lacking.append(str(requirement))
            continue
        if requirement.specifier and not requirement.specifier.contains(version, prereleases=True):
            lacking.append(f"{requirement} (this interpreter has {version})")
    return lacking


def prepare_interpreter(folder: Path, say: Say, fresh: bool = False, runner: Runner = run_subprocess,
                        python: str = sys.executable) -> str:
    """The interpreter to run the app with: `python` when it has every requirement (and not `fresh`),
    else the app's own venv with the requirements pip-installed into it."""
    wanted = requirements((folder / REQUIREMENTS).read_text(encoding="utf-8"))
    lacking = missing(wanted)
    if not fresh and not lacking:
        say(f"using this interpreter, {python} (it has {', '.join(r.name for r in wanted)})")
        return python
    why = "--run-venv asks for it" if fresh else f"this interpreter lacks {', '.join(lacking)}"
    say(f"making the app's own virtual environment, {folder / VENV} ({why})")
    if runner([python, "-m", "venv", VENV], folder) != 0:
        raise LaunchError(f"could not create {folder / VENV}")
    app_python = str(folder / venv_python())
    for number, requirement in enumerate(wanted, 1):
        say(f"installing {requirement} ({number}/{len(wanted)})")
        code = runner([app_python, "-m", "pip", "install", "--disable-pip-version-check", str(requirement)], folder)
        if code != 0:
            raise LaunchError(f"pip could not install {requirement} (exit {code}); the app's files are still in "
                              f"{folder}", code)
    return app_python


def ready_interpreter(folder: Path, python: str = sys.executable) -> str | None:
    """An interpreter that can run the app now, without installing anything: the app's own .venv
    when it has one, else `python` when it has every requirement, else None."""
    own = folder / venv_python()
    if own.is_file():
        return str(own)
    return python if not missing(requirements((folder / REQUIREMENTS).read_text(encoding="utf-8"))) else None


def migrate(folder: Path, python: str, say: Say, runner: Runner = run_subprocess) -> None:
    """Run the app's pending migrations now (`python models.py`: one transaction, a backup first)."""
    say(f"migrating the app's database with {python}")
    code = runner([python, "models.py"], folder)
    if code != 0:
        raise LaunchError(f"the migration failed (exit {code})", code)


def run_tests(folder: Path, python: str, say: Say, runner: Runner = run_subprocess) -> None:
    say("running the app's tests")
    code = runner([python, "-m", "pytest", "-q"], folder)
    if code != 0:
        raise LaunchError(f"the app's tests failed (pytest exit {code}); the app is not started", code)


def check_port(port: int) -> None:
    """Refuse a port something already listens on, before anything is written."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((HOST, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise InvalidRequestError(f"port {port} is in use on {HOST}: choose another with --port, or leave "
                                          "--port out for a free one") from None
            raise InvalidRequestError(f"cannot use port {port} on {HOST}: {e.strerror or e}") from None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status < 500
    except urllib.error.HTTPError as e:
        return e.code < 500
    except (OSError, ValueError):
        return False


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def serve(folder: Path, python: str, port: int, say: Say, wait: float = WAIT_SECONDS) -> int:
    """Start the app, print its URL to stdout once it answers, and serve until Ctrl-C or SIGTERM (then
    0); either way the app's server is stopped with it, never left running on its own."""
    url = f"http://{HOST}:{port}/"
    say(f"starting the app on {url}")
    child = subprocess.Popen([python, "-m", "uvicorn", "app:app", "--host", HOST, "--port", str(port)], cwd=folder)
    previous = signal.signal(signal.SIGTERM, _interrupt) if threading.current_thread() is threading.main_thread() else None
    try:
        deadline = time.monotonic() + wait
        while not _answers(url):
            if child.poll() is not None:
                raise LaunchError(f"the app stopped before it answered (exit {child.returncode})", child.returncode or 1)
            if time.monotonic() > deadline:
                raise LaunchError(f"the app did not answer {url} within {wait:.0f} s")
            time.sleep(0.2)
        print(url, flush=True)
        say("serving; Ctrl-C stops it")
        code = child.wait()
        raise LaunchError(f"the app stopped (exit {code})", code or 1)
    except KeyboardInterrupt:
        say("stopping the app")
        return 0
    finally:
        _stop(child)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _stop(child: subprocess.Popen) -> None:
    if child.poll() is not None:
        return
    child.terminate()
    try:
        child.wait(timeout=10)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
