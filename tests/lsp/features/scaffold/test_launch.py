"""`loopcoder scaffold ... --run` and the manual commands: the interpreter chosen, the commands run, a
real app started from a sentence and stopped again."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from loopcoder.engine.errors import InvalidRequestError
from loopcoder.lsp.cli import main
from loopcoder.lsp.features.scaffold import build, launch, write_files
from loopcoder.lsp.features.scaffold.render import TEMPLATES

LEAVE = "请做一个员工请假申请表单，包含申请人姓名、所属部门（研发部、市场部、财务部）、请假开始日期、结束日期、请假天数、请假原因，以及联系邮箱"


def test_the_manual_commands_use_the_apps_own_venv(tmp_path):
    folder = tmp_path / "my app"
    assert launch.manual_commands(folder, 8001, platform="linux") == (
        f"cd '{folder}' && python3 -m venv .venv && .venv/bin/python -m pip install -r requirements.txt && "
        ".venv/bin/python -m pytest -q && .venv/bin/python -m uvicorn app:app --host 127.0.0.1 --port 8001")


def test_the_manual_commands_on_windows():
    assert launch.manual_commands(Path("C:/work/my app"), platform="win32") == (
        'cd /d "C:/work/my app" && py -3 -m venv .venv && .venv\\Scripts\\python.exe -m pip install -r '
        "requirements.txt && .venv\\Scripts\\python.exe -m pytest -q && .venv\\Scripts\\python.exe -m uvicorn "
        "app:app --host 127.0.0.1 --port 8000")


def test_the_cli_prints_the_port_asked_for(tmp_path, capsys):
    assert main(["scaffold", LEAVE, "--out", str(tmp_path / "app"), "--port", "8123"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"cd {tmp_path / 'app'} && python3 -m venv .venv") and out.strip().endswith("--port 8123")


def test_the_checker_reads_the_templates_requirements():
    wanted = launch.requirements((TEMPLATES / "requirements.txt").read_text(encoding="utf-8"))
    assert [r.name for r in wanted] == ["fastapi", "uvicorn", "sqlalchemy", "alembic", "pydantic", "pytest", "httpx"]
    assert launch.missing(wanted) == []  # the test venv has them all ([dev])


def test_the_checker_names_what_is_missing_or_too_old():
    wanted = [Requirement("pytest>=1"), Requirement("no-such-package-loopcoder>=1"), Requirement("pytest>=999"),
              Requirement("pytest<1; python_version < '3'")]
    lacking = launch.missing(wanted)
    assert lacking[0] == "no-such-package-loopcoder>=1"
    assert lacking[1].startswith("pytest>=999 (this interpreter has ") and len(lacking) == 2


def _app(tmp_path, requirements):
    folder = tmp_path / "app"
    folder.mkdir()
    (folder / "requirements.txt").write_text(requirements, encoding="utf-8")
    return folder


class _Runner:
    def __init__(self, fail_on=None):
        self.calls, self.fail_on = [], fail_on

    def __call__(self, argv, cwd):
        self.calls.append((argv, cwd))
        return 1 if self.fail_on and self.fail_on in argv else 0


def test_this_interpreter_when_it_has_everything(tmp_path):
    folder, said, runner = _app(tmp_path, "pytest>=1\n# tests\nhttpx\n"), [], _Runner()
    assert launch.prepare_interpreter(folder, said.append, runner=runner) == sys.executable
    assert runner.calls == [] and said == [f"using this interpreter, {sys.executable} (it has pytest, httpx)"]


@pytest.mark.parametrize("fresh, text", [(False, "no-such-package-loopcoder\npytest\n"), (True, "pytest\n")])
def test_the_apps_own_venv_when_something_is_missing_or_asked(tmp_path, fresh, text):
    folder, said, runner = _app(tmp_path, text), [], _Runner()
    python = launch.prepare_interpreter(folder, said.append, fresh=fresh, runner=runner, python="/usr/bin/python3")
    assert python == str(folder / ".venv/bin/python")
    pip = [python, "-m", "pip", "install", "--disable-pip-version-check"]
    assert runner.calls == [(["/usr/bin/python3", "-m", "venv", ".venv"], folder)] + [
        (pip + [name], folder) for name in text.split()]
    assert ("--run-venv asks for it" if fresh else "this interpreter lacks no-such-package-loopcoder") in said[0]
    assert said[-1] == f"installing pytest ({len(text.split())}/{len(text.split())})"


def test_a_pip_failure_names_the_requirement(tmp_path):
    folder = _app(tmp_path, "pytest\nno-such-package-loopcoder>=2\n")
    with pytest.raises(launch.LaunchError, match=r"pip could not install no-such-package-loopcoder>=2 \(exit 1\)"):
        launch.prepare_interpreter(folder, print, runner=_Runner(fail_on="no-such-package-loopcoder>=2"))
    assert (folder / "requirements.txt").exists()


def test_failing_tests_stop_with_their_exit_code(tmp_path):
    with pytest.raises(launch.LaunchError, match="the app's tests failed") as e:
        launch.run_tests(tmp_path, sys.executable, print, runner=lambda argv, cwd: 5)
    assert e.value.code == 5


def test_a_port_in_use_is_refused_before_anything_is_written(tmp_path, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(InvalidRequestError, match=f"port {port} is in use"):
            launch.check_port(port)
        assert main(["scaffold", LEAVE, "--out", str(tmp_path / "app"), "--run", "--port", str(port)]) == 2
    assert f"port {port} is in use" in capsys.readouterr().err and not (tmp_path / "app").exists()


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_run_from_a_sentence_serves_the_app_until_interrupted(tmp_path, stop):
    """No model: the sentence states every field's type. This interpreter has the app's requirements.
    Ctrl-C (SIGINT) or SIGTERM stops loopcoder and the app's server with it."""
    port = launch.free_port()
    env = dict(os.environ, LOOPCODER_SOCKET=str(tmp_path / "no-daemon.sock"))
    # Ctrl-C as a terminal delivers it. A shell that runs the suite in the background (`make test &`)
    # starts it with SIGINT ignored, which the child would inherit: give it the default handling back.
    child = subprocess.Popen([sys.executable, "-m", "loopcoder.lsp.cli", "scaffold", LEAVE, "--out",
                              str(tmp_path / "leave"), "--run", "--port", str(port)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline, url = time.monotonic() + 120, None
        while url is None and time.monotonic() < deadline and child.poll() is None:
            line = child.stdout.readline()
            if line.startswith("http://"):
                url = line.strip()
        assert url == f"http://127.0.0.1:{port}/", child.stderr.read() if child.poll() is not None else url
        with urllib.request.urlopen(url, timeout=10) as page:
            assert page.status == 200 and "员工请假申请" in page.read().decode("utf-8")
        with urllib.request.urlopen(url + "api/records", timeout=10) as records:
            assert records.status == 200 and records.read().decode("utf-8").startswith("[")
        child.send_signal(stop)
        try:
            code = child.wait(timeout=60)
        except subprocess.TimeoutExpired:
            child.kill()
            pytest.fail(f"--run did not stop within 60 s of {stop.name}; its stderr: {child.communicate()[1][-3000:]}")
        assert code == 0
        err = child.stderr.read()
        assert "using this interpreter" in err and "running the app's tests" in err and "stopping the app" in err
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    with socket.socket() as s:  # the server is gone too
        assert s.connect_ex(("127.0.0.1", port)) != 0


def test_the_scaffold_extra_is_the_apps_requirements():
    import tomllib
    pyproject = tomllib.loads((Path(__file__).parents[4] / "pyproject.toml").read_text(encoding="utf-8"))
    extra = pyproject["project"]["optional-dependencies"]["scaffold"]
    wanted = launch.requirements((TEMPLATES / "requirements.txt").read_text(encoding="utf-8"))
    assert sorted(extra) == sorted(str(r) for r in wanted)


def _pypi_answers() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=3).close()
        return True
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not _pypi_answers(), reason="installs from PyPI, which does not answer")
def test_the_apps_own_venv_for_real(tmp_path):
    """--run-venv: a real venv, the requirements pip-installed from PyPI (about 35 s), the app's tests green."""
    folder = tmp_path / "leave"
    write_files(folder, build(LEAVE, engine=lambda: pytest.fail("the sentence states every type")).files)
    said = []
    python = launch.prepare_interpreter(folder, said.append, fresh=True)
    assert python == str(folder / ".venv" / "bin" / "python") and said[-1] == "installing httpx>=0.27 (7/7)"
    launch.run_tests(folder, python, said.append)
    assert subprocess.run([python, "-c", "import fastapi, uvicorn, sqlalchemy, alembic"], cwd=folder).returncode == 0


@pytest.mark.parametrize("extra, message", [(["--run-venv"], "--run-venv goes with --run"),
                                            (["--run", "--port", "70000"], "give a port from 1 to 65535")])
def test_run_flags_misused_are_refused(tmp_path, capsys, extra, message):
    assert main(["scaffold", LEAVE, "--out", str(tmp_path / "app")] + extra) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "app").exists()
