"""The eval sandbox: verdicts, limits, and the layers that keep a program in its folder and off the network.

Each escape test runs twice: through `run_python` (every layer) and with the operating
system's layers alone, without the audit hook, since they are the real protection.
"""

import os
import signal
import socket
import sys
import uuid
from pathlib import Path

import pytest

from loopcoder.engine.errors import InvalidRequestError
from loopcoder.lsp.eval import sandbox
from loopcoder.lsp.eval.sandbox import SandboxLimits, isolation, run_python

REPO = Path(__file__).resolve().parents[3]
AS_ROOT = os.geteuid() == 0


def os_layers_only(program: str, limits: SandboxLimits = SandboxLimits()):
    return sandbox._execute(program, limits, {**isolation(), "audit_hook": False})[0]


each_layering = pytest.mark.parametrize("run", [run_python, os_layers_only], ids=["all-layers", "os-layers"])

ATTEMPT = """
def attempt(name, action):
    try:
        action()
    except OSError as exc:
        print(name, "refused:", exc)
    else:
        print(name, "SUCCEEDED")
"""


def test_correct_solution_passes():
    program = "def add(a, b):\n    return a + b\n\nassert add(2, 3) == 5\nprint('ok')\n"
    result = run_python(program)
    assert (result.status, result.returncode, result.stdout, result.stderr) == ("passed", 0, "ok\n", "")
    assert result.passed and result.seconds > 0


def test_wrong_solution_fails_with_its_traceback():
    result = run_python("def add(a, b):\n    return a - b\n\nassert add(2, 3) == 5\n")
    assert (result.status, result.returncode, result.passed) == ("failed", 1, False)
    assert result.stderr.rstrip().endswith("AssertionError")
    assert run_python("import sys; sys.exit(3)").returncode == 3


def test_sleeping_program_times_out_and_its_folder_is_removed():
    result = run_python("import os, time\nprint(os.getcwd(), flush=True)\ntime.sleep(60)\n", SandboxLimits(timeout_s=1))
    assert (result.status, result.returncode) == ("timeout", None)
    assert 0.9 < result.seconds < 5
    assert not Path(result.stdout.strip()).exists()


def test_busy_loop_stops_at_the_cpu_limit():
    result = run_python("while True:\n    pass\n", SandboxLimits(timeout_s=20, cpu_s=1))
    assert (result.status, result.returncode) == ("timeout", -signal.SIGXCPU)
    assert result.seconds < 15  # one second of CPU, however busy the machine


@pytest.mark.parametrize("bomb", ["x = bytearray(10**10)\n", "xs = []\nwhile True:\n    xs.append(' ' * 10**6)\n"],
                         ids=["one-allocation", "growing-list"])
def test_memory_bomb_is_stopped(bomb):
    result = run_python(bomb, SandboxLimits(memory_bytes=256 << 20))
    assert result.status == "memory", result.stderr
    assert "MemoryError" in result.stderr


@each_layering
def test_network_is_unreachable(run):
    with socket.create_server(("127.0.0.1", 0)) as tcp, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        tcp_port, udp_port = tcp.getsockname()[1], udp.getsockname()[1]
        program = ATTEMPT + (
            "import socket\n"
            f"attempt('tcp', lambda: socket.create_connection(('127.0.0.1', {tcp_port}), timeout=2))\n"
            "datagram = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            f"attempt('udp', lambda: datagram.sendto(b'x', ('127.0.0.1', {udp_port})))\n"
            "attempt('dns', lambda: socket.getaddrinfo('example.com', 80))\n"
        )
        result = run(program)
        assert result.passed, result.stderr
        outcomes = [line.split()[:2] for line in result.stdout.splitlines()]
        assert outcomes == [["tcp", "refused:"], ["udp", "refused:"], ["dns", "refused:"]]
        tcp.setblocking(False)
        udp.setblocking(False)
        with pytest.raises(BlockingIOError):
            tcp.accept()
        with pytest.raises(BlockingIOError):
            udp.recv(16)


@each_layering
def test_writes_outside_the_working_directory_fail(run, tmp_path):
    marker = f"loopcoder-escape-{uuid.uuid4().hex}"
    # Folders the program cannot see (the test's, /tmp's, the repository's, home) and one it sees read-only.
    targets = [tmp_path / marker, Path("/tmp") / marker, REPO / marker, Path.home() / marker, Path(sys.prefix) / marker]
    program = ATTEMPT + "import os\n" + "".join(
        f"attempt('write', lambda: open({str(t)!r}, 'w').write('x'))\n"
        f"attempt('mkdir', lambda: os.mkdir({str(t) + '.d'!r}))\n"
        for t in targets
    )
    try:
        result = run(program)
        assert result.passed, result.stderr
        assert "SUCCEEDED" not in result.stdout
        assert result.stdout.count("refused") == 2 * len(targets)
        for target in targets:
            assert not target.exists() and not Path(f"{target}.d").exists()
    finally:
        for target in targets:  # tidy up should the sandbox ever leak
            target.unlink(missing_ok=True)
            if Path(f"{target}.d").is_dir():
                Path(f"{target}.d").rmdir()


@each_layering
def test_files_it_can_read_are_neither_changed_nor_removed(run):
    victim = Path(sys.prefix) / f"loopcoder-victim-{uuid.uuid4().hex}.txt"  # the venv: visible, read-only
    victim.write_text("intact")
    program = ATTEMPT + "import os\n" + (
        f"attempt('read', lambda: open({str(victim)!r}).read())\n"
        f"attempt('append', lambda: open({str(victim)!r}, 'a').write('x'))\n"
        f"attempt('truncate', lambda: os.truncate({str(victim)!r}, 0))\n"
        f"attempt('remove', lambda: os.remove({str(victim)!r}))\n"
        "attempt('devnull', lambda: open('/dev/null', 'w').write('x'))\n"
    )
    try:
        result = run(program)
        assert result.passed, result.stderr
        outcomes = [line.split()[1] for line in result.stdout.splitlines()]
        assert outcomes == ["SUCCEEDED"] + ["refused:"] * 3 + ["SUCCEEDED"]
        assert victim.read_text() == "intact"
    finally:
        victim.unlink(missing_ok=True)


def test_the_audit_hook_says_why():
    result = run_python("open('/tmp/loopcoder-escape', 'w')\n")
    assert result.status == "failed"
    assert "sandbox: writing '/tmp/loopcoder-escape' outside the working directory is not allowed" in result.stderr


def test_working_directory_is_writable_and_removed_afterwards():
    program = (
        "import os, tempfile\n"
        "os.mkdir('sub')\n"
        "with open('sub/data.txt', 'w') as f:\n    f.write('kept')\n"
        "with tempfile.NamedTemporaryFile('w') as f:\n    f.write('scratch')\n"
        "print(open('sub/data.txt').read())\n"
        "print(os.getcwd())\n"
    )
    result = run_python(program)
    assert result.passed, result.stderr
    kept, cwd = result.stdout.splitlines()
    assert kept == "kept"
    assert not Path(cwd).exists()


def test_output_is_truncated_to_its_head_and_tail():
    program = "import sys\nfor i in range(100000):\n    print(i)\n    print(i, file=sys.stderr)\nprint('END')\n"
    result = run_python(program, SandboxLimits(max_output_bytes=4096))
    assert result.passed
    for text in (result.stdout, result.stderr):
        assert text.startswith("0\n1\n2\n") and "bytes truncated" in text
        assert len(text.encode()) < 4096 + 64
    assert result.stdout.endswith("99999\nEND\n")


def test_endless_output_is_bounded_and_times_out():
    result = run_python("while True:\n    print('x' * 1000)\n", SandboxLimits(timeout_s=1, max_output_bytes=1000))
    assert result.status == "timeout"
    assert len(result.stdout) < 1100


def test_a_background_process_does_not_keep_the_run_alive():
    program = "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(30)\nprint('done')\n"
    result = run_python(program, SandboxLimits(timeout_s=10))
    assert (result.status, result.stdout) == ("passed", "done\n")
    assert result.seconds < 5


def test_fork_bomb_is_bounded():
    if not (isolation()["unprivileged_user"] and isolation()["pid_namespace"]):
        pytest.skip("RLIMIT_NPROC needs a uid of the run's own, and a PID namespace to end the children")
    program = """
import os, time
count = 0
try:
    while count < 200:  # a bound of its own, should the limit not hold
        if os.fork() == 0:
            time.sleep(5)
            os._exit(0)
        count += 1
except OSError:
    pass
print(count)
"""
    result = run_python(program, SandboxLimits(max_processes=16))
    assert result.passed, result.stderr
    assert int(result.stdout) < 16


@pytest.mark.parametrize(
    "call",
    [
        lambda: run_python(b"print(1)"),
        lambda: run_python(None),
        lambda: run_python("print(1)", {"timeout_s": 1}),
        lambda: SandboxLimits(timeout_s=0),
        lambda: SandboxLimits(timeout_s="1"),
        lambda: SandboxLimits(cpu_s=-1),
        lambda: SandboxLimits(cpu_s=True),
        lambda: SandboxLimits(memory_bytes=0),
        lambda: SandboxLimits(max_output_bytes=0),
        lambda: SandboxLimits(max_file_bytes=-5),
        lambda: SandboxLimits(max_processes=0),
    ],
)
def test_bad_arguments_raise(call):
    with pytest.raises(InvalidRequestError):
        call()


def test_a_broken_sandbox_is_an_error_result(monkeypatch):
    isolation()  # probed while the interpreter is still there
    monkeypatch.setattr(sys, "executable", "/nonexistent/python3")
    result = run_python("print(1)")
    assert (result.status, result.returncode, result.passed) == ("error", None, False)
    assert "/nonexistent/python3" in result.stderr


def test_isolation_reports_the_active_layers():
    layers = isolation()
    assert set(layers) == {*sandbox.OS_LAYERS, "audit_hook"}
    assert layers["network_namespace"] and layers["audit_hook"]
    if AS_ROOT:
        assert layers["mount_namespace"] and layers["pid_namespace"] and layers["unprivileged_user"]
    assert isolation() is not isolation()  # a copy: the caller may not change what later runs get
