import os
from pathlib import Path

import pytest
import torch

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
    if path.exists():
        from loopcoder.engine.client import DaemonClient

        try:
            DaemonClient(path, client_name="pytest teardown").shutdown()
        except Exception:
            pass
    if old is None:
        os.environ.pop("LOOPCODER_SOCKET", None)
    else:
        os.environ["LOOPCODER_SOCKET"] = old
