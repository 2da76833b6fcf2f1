import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# The repository root is never on the test run's sys.path (DESIGN.md): the modules under test are
# the installed loopcoder.*, never the folders themselves. pytest's importlib mode adds nothing;
# `python -m pytest` adds the working directory, removed here before anything imports. (Where a
# Python does have the root on its path, kernels/__init__.py hands the name `kernels` back to
# Hugging Face's package: tests/test_packaging.py.)
sys.path[:] = [p for p in sys.path if Path(p or os.curdir).resolve() != ROOT]

import pytest  # noqa: E402
import torch  # noqa: E402

# Keep CPU test runs reproducible and bounded on a 2-core machine.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

# ../shared beside the checkout; LOOPCODER_GOLDEN_DIR points elsewhere (e.g. on the GPU machine).
GOLDEN_DIR = Path(
    os.environ.get("LOOPCODER_GOLDEN_DIR") or Path(__file__).resolve().parents[1].parent / "shared" / "golden" / "loopcoder-tiny"
)


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    if not (GOLDEN_DIR / "model.safetensors").is_file():
        pytest.fail(f"golden data missing at {GOLDEN_DIR}: the checkout needs ../shared beside it")
    return GOLDEN_DIR


@pytest.fixture(scope="session")
def default_engine():
    """The embedded default model (SmolLM2-135M GGUF), loaded once per test run."""
    from loopcoder.engine import load_model

    return load_model()


@pytest.fixture(scope="session", autouse=True)
def private_engine_socket(tmp_path_factory):
    """Every `loopcoder lsp` a test starts shares one engine daemon on a socket of this test
    run (never the user's own); it is stopped when the run ends."""
    path = tmp_path_factory.mktemp("engine-socket") / "engine.sock"
    old = os.environ.get("LOOPCODER_SOCKET")
    os.environ["LOOPCODER_SOCKET"] = str(path)
    yield path
    from loopcoder.engine.serving.socket_file import socket_claimed

    # An engine a test autostarted may still be loading: it holds the lock but does not listen yet.
    # Left alone it would outlive the run by its idle timeout, so wait for it to listen, then stop it.
    deadline = time.monotonic() + 120
    while not path.exists() and socket_claimed(path) and time.monotonic() < deadline:
        time.sleep(0.2)
    if path.exists():
        from loopcoder.engine.serving.client import DaemonClient

        try:
            DaemonClient(path, client_name="pytest teardown").shutdown()
        except Exception:
            pass
    if old is None:
        os.environ.pop("LOOPCODER_SOCKET", None)
    else:
        os.environ["LOOPCODER_SOCKET"] = old


@pytest.fixture
def screenshot_path(tmp_path):
    """Where a browser test saves its page: this test's temporary folder, or docs/img when
    `make docs-images` asks (LOOPCODER_DOCS_IMAGES), so a test run never rewrites a tracked file."""

    def path(name: str) -> Path:
        folder = Path(os.environ.get("LOOPCODER_DOCS_IMAGES") or tmp_path)
        folder.mkdir(parents=True, exist_ok=True)
        return folder / name

    return path


def tracked_changes() -> str | None:
    """`git status` of the tracked files, or None outside a git checkout."""
    try:
        done = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def pytest_sessionstart(session):
    session.config.stash[_CLEAN_AT_START] = tracked_changes() == ""


def pytest_sessionfinish(session, exitstatus):
    """A run that starts on a clean checkout (CI's fresh clone) must end on one: tests write
    into temporary folders, never over tracked files."""
    if not session.config.stash.get(_CLEAN_AT_START, False) or os.environ.get("LOOPCODER_DOCS_IMAGES"):
        return
    changed = tracked_changes()
    if changed:
        session.config.get_terminal_writer().line(f"the test run changed tracked files:\n{changed}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


_CLEAN_AT_START = pytest.StashKey[bool]()
