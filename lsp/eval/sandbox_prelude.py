"""The prelude of an eval sandbox run: Python that runs in the program's interpreter before main.py.

`sandbox.py` passes it as `python -I -B -c PRELUDE main.py`. It installs an audit hook, which
the program cannot remove, that refuses sockets and writes outside the working directory with
a clear message, then runs main.py as `__main__`. Defence in depth only: ctypes can step
around an audit hook, and the operating system's layers are the real protection.
"""

PRELUDE = r'''
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
