"""The execution sandbox of `loopcoder eval`: run one untrusted Python program, bounded.

One run is three processes::

    caller ── launcher     python -I -S sandbox.py SPEC, as the caller
                 │         unshares the network, mount, PID and IPC namespaces, builds a
                 │         read-only root on a tmpfs (system folders, the interpreter, and the
                 │         working directory, the one writable place) and chroots into it
                 └─ supervisor     PID 1 of the new PID namespace: reaps, reports the exit
                       └─ program  sys.executable -I main.py, behind an audit-hook prelude:
                                   its own uid, no capabilities, no new privileges, rlimits

The operating system is the real protection; each layer that works on this machine is
required on every run, and `isolation()` names them. Without root, a user namespace gives
the same layers except the uid of its own. The prelude's audit hook, which the program
cannot remove, refuses sockets and writes outside the working directory with a clear
message: defence in depth, since ctypes can step around it.

Every run gets a uid no account uses (`_UID_BASE` plus the launcher's pid), so
RLIMIT_NPROC counts that run's processes alone; the uid of root is exempt from it.
"""

from __future__ import annotations

import ctypes
import functools
import json
import os
import resource
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

if __name__ == "__main__":  # the launcher: this file run as a script, with the standard library only
    InvalidRequestError = ValueError
else:
    from loopcoder.engine.errors import InvalidRequestError

STATUSES = ("passed", "failed", "timeout", "memory", "error")
# Reported by `isolation()` besides "audit_hook".
OS_LAYERS = ("network_namespace", "mount_namespace", "pid_namespace", "user_namespace", "unprivileged_user")

_PROGRAM_FILE = "main.py"
_UID_BASE = 1 << 30
_TICK_S = 0.05  # how often a quiet program is checked for having exited
_DRAIN_S = 0.2  # output still read once the program has gone or been killed
_CHUNK_BYTES = 1 << 16
_PROBE_TIMEOUT_S = 60.0
_RECENT_BYTES = 1024  # of stderr, where a MemoryError shows

# What the program sees besides its interpreter and working directory.
_SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
_DEVICES = ("null", "zero", "full", "random", "urandom")
_DEVICE_LINKS = {"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1",
                 "stderr": "/proc/self/fd/2"}

# <sched.h>, <sys/mount.h>, <linux/prctl.h>
CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWUSER = 0x20000, 0x8000000, 0x10000000
CLONE_NEWPID, CLONE_NEWNET = 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
MS_BIND, MS_REC, MS_PRIVATE = 4096, 16384, 1 << 18
# Per-mount flags a bind remount keeps: a user namespace may not clear them (statvfs ST_* == MS_*).
_KEPT_MOUNT_FLAGS = MS_NOSUID | MS_NODEV | MS_NOEXEC | 1024 | 2048 | 4096  # + NOATIME, NODIRATIME, RELATIME
PR_SET_PDEATHSIG, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 1, 24, 38


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


# ---------------------------------------------------------------- the caller's side


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
        argv = [sys.executable, "-I", "-B", "-c", _PRELUDE, _PROGRAM_FILE]
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
                [sys.executable, "-I", "-S", "-B", os.path.abspath(__file__), json.dumps(spec)],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                cwd=spec["workdir"], env=spec["env"], start_new_session=True, pass_fds=(report_write,),
            )
        finally:
            os.close(report_write)
        out, err = _Capture(limits.max_output_bytes), _Capture(limits.max_output_bytes)
        try:
            timed_out = _follow(proc, (out, err), started + limits.timeout_s)
        except BaseException:  # e.g. KeyboardInterrupt: the run must not outlive its caller's interest
            _kill_group(proc.pid)
            proc.wait()
            raise
        report = _read_report(report_file.fileno())
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


class _Capture:
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


def _follow(proc: subprocess.Popen, captures: tuple[_Capture, _Capture], deadline: float) -> bool:
    """Reads the output until the launcher exits or the deadline passes; returns whether it timed out."""
    with selectors.DefaultSelector() as selector:
        for stream, capture in zip((proc.stdout, proc.stderr), captures):
            os.set_blocking(stream.fileno(), False)
            selector.register(stream, selectors.EVENT_READ, capture)
        _pump(selector, deadline, stop=lambda: _has_exited(proc.pid))
        timed_out = not _wait_for_exit(proc.pid, deadline)
        # Before reaping the launcher, so that its process group id cannot have been reused.
        _kill_group(proc.pid)
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


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # every process of the run has already gone


def _read_report(fd: int) -> dict:
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


def _remove_tree(path: str) -> None:
    def make_parent_writable(function, failed_path, _exc) -> None:
        os.chmod(os.path.dirname(failed_path), 0o700)  # a program without root may have locked a folder
        function(failed_path)

    handler = {"onexc" if sys.version_info >= (3, 12) else "onerror": make_parent_writable}
    shutil.rmtree(path, **handler)


# ---------------------------------------------------------------- the launcher's side


class _Layers:
    """The layers a run wants (True: required, None: if possible, False: off), and those it got."""

    def __init__(self, wanted: dict[str, bool | None]) -> None:
        self.wanted = wanted
        self.active = dict.fromkeys(wanted, False)

    def attempt(self, name: str, step) -> bool:
        if self.wanted[name] is False:
            return False
        try:
            step()
        except OSError as exc:
            if self.wanted[name]:
                raise RuntimeError(f"{name} could not be set up: {exc}") from exc
            self.active[name] = False
            return False
        self.active[name] = True
        return True


_libc = ctypes.CDLL(None, use_errno=True)


def _checked(result: int, what: str) -> None:
    if result != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"{what}: {os.strerror(error)}")


def _unshare(flags: int) -> None:
    _checked(_libc.unshare(ctypes.c_int(flags)), f"unshare({flags:#x})")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    arguments = (_c_string(source), _c_string(target), _c_string(fstype), ctypes.c_ulong(flags), _c_string(data))
    result = _libc.mount(*arguments)
    _checked(result, f"mount {source or ''} on {target}")


def _c_string(text: str | None) -> bytes | None:
    return None if text is None else os.fsencode(text)


def _prctl(option: int, value: int) -> None:
    _checked(_libc.prctl(ctypes.c_int(option), ctypes.c_ulong(value), ctypes.c_ulong(0), ctypes.c_ulong(0),
                         ctypes.c_ulong(0)), f"prctl({option})")


def _report(fd: int, **note) -> None:
    os.write(fd, (json.dumps(note) + "\n").encode())


def _launcher_main(spec: dict) -> None:
    fd = spec["report_fd"]
    os.set_inheritable(fd, False)  # the program must not see it
    os.umask(0o022)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    spec["uid"] = _UID_BASE + os.getpid()
    layers = _Layers(spec["layers"])
    try:
        _isolate(spec, layers)
        supervisor = os.fork()
        if supervisor == 0:
            _supervise(spec, layers)
    except BaseException as exc:
        _report(fd, error=f"sandbox: {exc}")
        os._exit(1)
    code = os.waitstatus_to_exitcode(os.waitpid(supervisor, 0)[1])
    os._exit(code if code >= 0 else 128 - code)


def _isolate(spec: dict, layers: _Layers) -> None:
    if os.geteuid() != 0:
        layers.attempt("user_namespace", _enter_user_namespace)
    else:
        layers.wanted["user_namespace"] = False  # root needs none
    layers.attempt("network_namespace", lambda: _unshare(CLONE_NEWNET))
    layers.attempt("mount_namespace", lambda: _enter_private_root(spec))
    layers.attempt("pid_namespace", lambda: _unshare(CLONE_NEWPID | CLONE_NEWIPC))


def _enter_user_namespace() -> None:
    uid, gid = os.geteuid(), os.getegid()
    _unshare(CLONE_NEWUSER)
    for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
        with open(f"/proc/self/{name}", "w") as f:
            f.write(text)


def _enter_private_root(spec: dict) -> None:
    """A tmpfs root, read-only, holding the system folders, the interpreter and /dev's harmless nodes;
    the working directory, at its own path, is the only writable place."""
    _unshare(CLONE_NEWNS)
    _mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing done here reaches the caller's mounts
    root = spec["root"]
    _mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")
    exposed: list[str] = []
    for path in sorted(set(spec["binds"]), key=len):  # a folder before what lies inside it
        if os.path.lexists(path) and not any(_is_within(path, outer) for outer in exposed):
            _expose(root, path, MS_RDONLY | MS_NOSUID | MS_NODEV)
            exposed.append(path)
    for name in _DEVICES:
        _expose(root, f"/dev/{name}", MS_RDONLY | MS_NOSUID | MS_NOEXEC)  # device nodes stay writable
    for name, target in _DEVICE_LINKS.items():
        os.symlink(target, f"{root}/dev/{name}")
    for folder in ("/proc", "/tmp"):
        os.makedirs(root + folder, exist_ok=True)
    _expose(root, spec["workdir"], MS_NOSUID | MS_NODEV)
    _mount(None, root, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    os.chroot(root)
    os.chdir("/")


def _is_within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _expose(root: str, path: str, flags: int) -> None:
    """Shows `path` at the same place under `root`: a bind mount, or a copy of a symlink."""
    target = root + path
    os.makedirs(os.path.dirname(target), exist_ok=True)
    if os.path.islink(path):  # /bin -> usr/bin on a merged /usr
        os.symlink(os.readlink(path), target)
        return
    if os.path.isdir(path):
        os.makedirs(target, exist_ok=True)
    else:
        open(target, "x").close()
    _mount(path, target, None, MS_BIND)
    kept = os.statvfs(target).f_flag & _KEPT_MOUNT_FLAGS
    _mount(None, target, None, MS_BIND | MS_REMOUNT | flags | kept)


def _supervise(spec: dict, layers: _Layers) -> None:
    """PID 1 of the run's PID namespace: when it exits, the kernel kills every process left in it."""
    fd = spec["report_fd"]
    try:
        if layers.active["pid_namespace"]:
            _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # a killed launcher takes the namespace with it
            if layers.active["mount_namespace"]:
                layers.attempt("pid_namespace", _mount_own_proc)
        program = os.fork()
        if program == 0:
            _exec_program(spec, layers)
        while (reaped := os.wait())[0] != program:  # orphans are ours to reap
            pass
    except BaseException as exc:
        _report(fd, error=f"sandbox: {exc}")
        os._exit(1)
    status = reaped[1]
    if os.WIFSIGNALED(status):
        _report(fd, signal=os.WTERMSIG(status))
        os._exit(128 + os.WTERMSIG(status))
    os._exit(os.waitstatus_to_exitcode(status))


def _mount_own_proc() -> None:
    """A /proc that shows the run's own processes alone."""
    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)


def _exec_program(spec: dict, layers: _Layers) -> None:
    fd = spec["report_fd"]
    try:
        os.chdir(spec["workdir"])
        if os.geteuid() != 0:
            layers.wanted["unprivileged_user"] = False  # the caller's uid is the only one mapped
        elif not layers.attempt("unprivileged_user", lambda: _become(spec["uid"], spec["workdir"])):
            _drop_capability_bounding_set()  # uid 0 without capabilities: no remounting, no chroot escape
        _limit_resources(spec["limits"], own_uid=layers.active["unprivileged_user"])
        _prctl(PR_SET_NO_NEW_PRIVS, 1)
        _report(fd, layers=layers.active)
        os.execve(spec["argv"][0], spec["argv"], spec["env"])
    except BaseException as exc:
        _report(fd, error=f"sandbox: cannot start the program: {exc}")
        os._exit(127)


def _become(uid: int, workdir: str) -> None:
    os.chown(workdir, uid, uid)
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)


def _drop_capability_bounding_set() -> None:
    for capability in range(64):
        try:
            _prctl(PR_CAPBSET_DROP, capability)
        except OSError:  # EINVAL: past the kernel's last capability
            break


def _limit_resources(limits: dict, own_uid: bool) -> None:
    resource.setrlimit(resource.RLIMIT_CPU, (limits["cpu_s"], limits["cpu_s"] + 1))
    resource.setrlimit(resource.RLIMIT_AS, (limits["memory_bytes"], limits["memory_bytes"]))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits["max_file_bytes"], limits["max_file_bytes"]))
    if own_uid and limits["max_processes"] is not None:  # otherwise it would count the caller's processes
        resource.setrlimit(resource.RLIMIT_NPROC, (limits["max_processes"], limits["max_processes"]))


# Runs in the program's interpreter before main.py (python -I -c _PRELUDE main.py).
_PRELUDE = r'''
import sys

def _install_sandbox_guard():
    import os
    writing = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    network = {"socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg", "socket.getaddrinfo",
               "socket.gethostbyname", "socket.gethostbyname_ex", "socket.gethostbyaddr", "socket.getnameinfo"}
    written_arguments = {"os.remove": (0,), "os.rmdir": (0,), "os.mkdir": (0,), "os.rename": (0, 1),
                         "os.link": (1,), "os.symlink": (1,), "os.chmod": (0,), "os.chown": (0,),
                         "os.truncate": (0,), "os.utime": (0,), "shutil.rmtree": (0,), "shutil.copyfile": (1,)}
    home = os.path.realpath(os.getcwd())
    realpath, fsdecode = os.path.realpath, os.fsdecode

    def inside(path):
        if isinstance(path, int):
            return True  # an open descriptor, checked when it was opened
        full = realpath(fsdecode(path))
        return full == home or full.startswith(home + "/") or full == "/dev/null"

    def refuse(what):
        raise PermissionError(f"sandbox: {what} is not allowed")

    def guard(event, args):
        if event == "open":
            path, mode, flags = args
            if ((flags or 0) & writing or any(c in (mode or "") for c in "wax+")) and not inside(path):
                refuse(f"writing {path!r} outside the working directory")
        elif event in network:
            refuse(f"network access ({event})")
        elif event in written_arguments:
            for index in written_arguments[event]:
                if not inside(args[index]):
                    refuse(f"{event} on {args[index]!r} outside the working directory")

    sys.addaudithook(guard)

_install_sandbox_guard()
del _install_sandbox_guard
sys.argv = sys.argv[1:]
with open(sys.argv[0], "rb") as _source:
    _code = compile(_source.read(), __import__("os").path.abspath(sys.argv[0]), "exec")
sys.modules["__main__"] = _main = type(sys)("__main__")
_main.__file__ = _code.co_filename
exec(_code, vars(_main))
'''


if __name__ == "__main__":
    _launcher_main(json.loads(sys.argv[1]))
