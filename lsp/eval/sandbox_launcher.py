"""The launcher of an eval sandbox run: this file run as a script, with the standard library only.

`sandbox.py` starts it as `python -I -S -B sandbox_launcher.py SPEC`, where SPEC (JSON) names
the working directory, the empty folder for the new root, the folders to show there, the
program's argv and environment, the layers wanted and the rlimits. It cannot import
loopcoder (isolated mode, no site), so everything it needs lives here.

The launcher unshares the network, mount, PID and IPC namespaces (and, without root, enters
a user namespace), builds a read-only root on a tmpfs and chroots into it, and forks the
supervisor, PID 1 of the new PID namespace, which forks the program: under root, a uid of
its own (or, where that fails, no capabilities); then no new privileges, rlimits, exec.
What happened goes back to the caller on the report descriptor, one JSON object a line:
{"layers": {...}}, {"error": "..."}, {"signal": N}.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import signal
import sys

# Every run gets a uid no account uses, this plus the launcher's pid, so that RLIMIT_NPROC
# counts that run's processes alone; the uid of root is exempt from it.
_UID_BASE = 1 << 30

# What the program sees of /dev besides the system folders, the interpreter and its working directory.
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


if __name__ == "__main__":
    _launcher_main(json.loads(sys.argv[1]))
