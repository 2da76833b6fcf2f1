"""The execution sandbox of `loopcoder eval`: run one untrusted Python program, bounded.

One run is three processes::

    caller ── launcher     python -I -S sandbox_launcher.py SPEC, as the caller
                 │         unshares the network, mount, PID and IPC namespaces, builds a
                 │         read-only root on a tmpfs (system folders, the interpreter, and the
                 │         working directory, the one writable place) and chroots into it
                 └─ supervisor     PID 1 of the new PID namespace: reaps, reports the exit
                       └─ program  sys.executable -I main.py, behind an audit-hook prelude:
                                   its own uid, no capabilities, no new privileges, rlimits

This module is the caller's side: the limits, the verdict, and one run from its folder to
its result. The launcher and supervisor live in `sandbox_launcher.py` (a script, standard
library only), the prelude in `sandbox_prelude.py`, and the caller's watch over a run's
output, deadline and processes in `sandbox_watch.py`.

The operating system is the real protection; each layer that works on this machine is
required on every run, and `isolation()` names them. Without root, a user namespace gives
the same layers except the uid of its own. The prelude's audit hook, which the program
cannot remove, refuses sockets and writes outside the working directory with a clear
message: defence in depth, since ctypes can step around it.

Every run gets a uid no account uses (the launcher's `_UID_BASE` plus its pid), so
RLIMIT_NPROC counts that run's processes alone; the uid of root is exempt from it.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

from loopcoder.engine.errors import InvalidRequestError

from .sandbox_prelude import PRELUDE
from .sandbox_watch import Capture, follow, kill_group, read_report

STATUSES = ("passed", "failed", "timeout", "memory", "error")
# Reported by `isolation()` besides "audit_hook".
OS_LAYERS = ("network_namespace", "mount_namespace", "pid_namespace", "user_namespace", "unprivileged_user")

_LAUNCHER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sandbox_launcher.py")
_PROGRAM_FILE = "main.py"
_PROBE_TIMEOUT_S = 60.0

# What the program sees besides its interpreter and working directory (and /dev's harmless nodes).
_SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")


@dataclass(frozen=True)
class ExecResult:
    status: str  # one of STATUSES: exit 0, nonzero exit, time limit, memory limit, sandbox failure
    returncode: int | None  # the program's exit status, -N for signal N; None when killed or never run
    stdout: str  # at most about max_output_bytes: its head and tail, with a marker between
    stderr: str
    seconds: float

    @property
    def passed(self) -> bool:
        return self.status == "passed"


@dataclass(frozen=True)
class SandboxLimits:
    timeout_s: float = 10.0  # wall clock
    cpu_s: int = 10  # RLIMIT_CPU; running past it counts as a timeout
    memory_bytes: int = 1 << 30  # RLIMIT_AS; the interpreter alone maps about 30 MB
    max_output_bytes: int = 64 * 1024  # each of stdout and stderr
    max_file_bytes: int = 16 << 20  # RLIMIT_FSIZE
    max_processes: int | None = 64  # RLIMIT_NPROC, threads included; applied only with a uid of its own

    def __post_init__(self) -> None:
        for name in ("timeout_s", "cpu_s", "memory_bytes", "max_output_bytes", "max_file_bytes", "max_processes"):
            value = getattr(self, name)
            if value is None and name == "max_processes":
                continue
            number_types = (int, float) if name == "timeout_s" else int
            if isinstance(value, bool) or not isinstance(value, number_types) or not value > 0:
                raise InvalidRequestError(f"sandbox limit {name} must be a positive number, not {value!r}")


def run_python(program: str, limits: SandboxLimits = SandboxLimits()) -> ExecResult:
    """Runs `program` as a script in a fresh sandbox; a sandbox failure is status "error", never an exception."""
    if not isinstance(program, str):
        raise InvalidRequestError(f"the program must be a str, not {type(program).__name__}")
    if not isinstance(limits, SandboxLimits):
        raise InvalidRequestError(f"limits must be SandboxLimits, not {type(limits).__name__}")
    try:
        return _execute(program, limits, isolation())[0]
    except Exception as exc:  # the boundary: the caller gets a result it can count, with the reason
        return ExecResult("error", None, "", f"sandbox: {type(exc).__name__}: {exc}", 0.0)


def isolation() -> dict[str, bool]:
    """Which protections every run gets on this machine (probed once, with an empty program)."""
    return dict(_probed_isolation())


@functools.cache
def _probed_isolation() -> tuple[tuple[str, bool], ...]:
    limits = SandboxLimits(timeout_s=_PROBE_TIMEOUT_S)
    wanted: dict[str, bool | None] = {**dict.fromkeys(OS_LAYERS), "audit_hook": True}
    result, active = _execute("pass", limits, wanted)
    if not result.passed and active.get("unprivileged_user"):
        # Without a private root the interpreter may lie out of reach of a uid with no account.
        result, active = _execute("pass", limits, {**wanted, "unprivileged_user": False})
    return (*((name, bool(active.get(name))) for name in OS_LAYERS), ("audit_hook", True))


def _execute(program: str, limits: SandboxLimits, wanted: dict[str, bool | None]) -> tuple[ExecResult, dict]:
    """One run. `wanted` maps each layer to True (required), None (if possible) or False (off)."""
    base = tempfile.mkdtemp(prefix="loopcoder-eval-")
    try:
        os.chmod(base, 0o711)  # a uid of its own may pass through to its working directory
        workdir, root = os.path.join(base, "work"), os.path.join(base, "root")
        os.mkdir(workdir)
        os.mkdir(root)
        with open(os.path.join(workdir, _PROGRAM_FILE), "w", encoding="utf-8") as f:
            f.write(program)
        return _launch(_spec(workdir, root, limits, wanted), limits)
    finally:
        _remove_tree(base)


def _spec(workdir: str, root: str, limits: SandboxLimits, wanted: dict[str, bool | None]) -> dict:
    if wanted.get("audit_hook"):
        argv = [sys.executable, "-I", "-B", "-c", PRELUDE, _PROGRAM_FILE]
    else:
        argv = [sys.executable, "-I", "-B", _PROGRAM_FILE]
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir,
           "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
    return {
        "workdir": workdir,
        "root": root,
        "binds": _interpreter_paths() + list(_SYSTEM_PATHS),
        "argv": argv,
        "env": env,
        "layers": {name: wanted.get(name) for name in OS_LAYERS},
        "limits": {"cpu_s": limits.cpu_s, "memory_bytes": limits.memory_bytes,
                   "max_file_bytes": limits.max_file_bytes, "max_processes": limits.max_processes},
    }


def _interpreter_paths() -> list[str]:
    """Folders that make sys.executable run as it does here: the venv, its base, and symlink targets."""
    paths = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
             os.path.dirname(sys.executable), os.path.dirname(os.path.realpath(sys.executable))]
    return paths + [os.path.realpath(p) for p in paths]


def _launch(spec: dict, limits: SandboxLimits) -> tuple[ExecResult, dict]:
    report_read, report_write = os.pipe()
    spec["report_fd"] = report_write
    started = time.monotonic()
    with os.fdopen(report_read, "rb") as report_file:
        try:
            proc = subprocess.Popen(
                [sys.executable, "-I", "-S", "-B", _LAUNCHER, json.dumps(spec)],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                cwd=spec["workdir"], env=spec["env"], start_new_session=True, pass_fds=(report_write,),
            )
        finally:
            os.close(report_write)
        out, err = Capture(limits.max_output_bytes), Capture(limits.max_output_bytes)
        try:
            timed_out = follow(proc, (out, err), started + limits.timeout_s)
        except BaseException:  # e.g. KeyboardInterrupt: the run must not outlive its caller's interest
            kill_group(proc.pid)
            proc.wait()
            raise
        report = read_report(report_file.fileno())
    seconds = time.monotonic() - started
    stdout, stderr = out.text(), err.text()
    if "error" in report:
        return ExecResult("error", None, stdout, "\n".join(report["error"]), seconds), report.get("layers", {})
    returncode = None if timed_out else -report["signal"] if "signal" in report else proc.returncode
    status = _status(returncode, timed_out, err.recent.decode("utf-8", "replace"))
    return ExecResult(status, returncode, stdout, stderr, seconds), report.get("layers", {})


def _status(returncode: int | None, timed_out: bool, stderr_end: str) -> str:
    if timed_out or returncode == -signal.SIGXCPU:
        return "timeout"
    if returncode == 0:
        return "passed"
    lines = stderr_end.strip().splitlines()[-3:]
    if any(line.startswith("MemoryError") or "[Errno 12]" in line for line in lines):
        return "memory"
    return "failed"


def _remove_tree(path: str) -> None:
    def make_parent_writable(function, failed_path, _exc) -> None:
        os.chmod(os.path.dirname(failed_path), 0o700)  # a program without root may have locked a folder
        function(failed_path)

    handler = {"onexc" if sys.version_info >= (3, 12) else "onerror": make_parent_writable}
    shutil.rmtree(path, **handler)
