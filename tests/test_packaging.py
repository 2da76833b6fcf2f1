"""Import names live under `loopcoder.*`, from the editable install and from a wheel."""

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_editable_install_maps_top_level_folders():
    import loopcoder.engine
    import loopcoder.kernels
    import loopcoder.lsp

    assert Path(loopcoder.engine.__file__).parent == ROOT / "engine"
    assert Path(loopcoder.kernels.__file__).parent == ROOT / "kernels"
    assert Path(loopcoder.lsp.__file__).parent == ROOT / "lsp"


@pytest.mark.slow
def test_wheel_contains_namespaced_packages_and_imports(tmp_path):
    # setuptools reuses build/ between builds: a module that became a package would ship twice.
    shutil.rmtree(ROOT / "build", ignore_errors=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True,
    )
    (wheel,) = tmp_path.glob("loopcoder-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "loopcoder/engine/engine.py" in names and "loopcoder/kernels/attention/__init__.py" in names
    assert "loopcoder/engine/models/loopcoder.py" in names and "loopcoder/lsp/cli/__init__.py" in names
    for module in ("engine/parallel/sharding.py", "engine/serving/http/openai.py", "engine/sampling/grammar.py"):
        assert f"loopcoder/{module}" in names, module
    assert "loopcoder/engine/sampling/grammar.py" in names and "loopcoder/engine/sampling.py" not in names
    assert "loopcoder/lsp/features/actions.py" in names and "loopcoder/lsp/features/context/workspace.py" in names
    assert "loopcoder/lsp/server/sync.py" in names and "loopcoder/lsp/server.py" not in names
    assert "loopcoder/lsp/cli/__main__.py" in names and "loopcoder/lsp/cli.py" not in names
    assert not any(n.startswith(("engine/", "kernels/", "lsp/", "tests/")) for n in names)
    # The CPU kernels, compiled from kernels/*.c (this machine has a compiler).
    for ext in ("kernels/_gguf_cpu", "kernels/attention/_decode_cpu", "kernels/_decoder_cpu"):
        assert any(n.startswith(f"loopcoder/{ext}") for n in names), ext

    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)], check=True)
    # -S: no site processing, so the editable install's path hook is not active; the
    # venv's site-packages is added by hand for torch and friends.
    site_packages = sysconfig.get_paths()["purelib"]
    code = (
        f"import sys; sys.path[:0] = [{str(target)!r}, {site_packages!r}]; "
        "import loopcoder.engine, loopcoder.lsp.cli; from loopcoder.engine import load_model; "
        "from loopcoder.kernels import gguf_linear; assert gguf_linear.cpu_kernel_available(), gguf_linear.cpu_kernel_status(); "
        "print(loopcoder.engine.__file__)"
    )
    out = subprocess.run([sys.executable, "-S", "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip().startswith(str(target))


def test_the_engine_imports_first_in_a_fresh_interpreter():
    """engine/__init__ imports its public names (the kernels among them) with nothing imported
    before it; kernels/ imports nothing of the engine (tests/kernels/test_imports.py)."""
    code = "import loopcoder.engine; from loopcoder.engine import Engine, load_model, SamplingParams"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.parametrize("safe_path", ["1", None], ids=["root-off-the-path", "root-on-the-path"])
def test_transformers_kernel_integration_imports_from_the_repository_root(safe_path):
    """transformers imports Hugging Face's `kernels` package; our top-level kernels/ never stands in
    for it: not in this process, and not in a Python started in the checkout, with the repository root
    on its sys.path (as `python -m` and `python -c` put it) or not (PYTHONSAFEPATH)."""
    assert all(Path(p or ".").resolve() != ROOT for p in sys.path)
    import transformers.integrations.hub_kernels  # noqa: F401

    assert not _is_ours(getattr(sys.modules.get("kernels"), "__file__", None))
    code = "import sys, transformers.integrations.hub_kernels; print(getattr(sys.modules.get('kernels'), '__file__', ''))"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONSAFEPATH"} | ({"PYTHONSAFEPATH": safe_path} if safe_path else {})
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not _is_ours(proc.stdout.strip())


def test_without_hugging_faces_kernels_the_checkout_says_why_there_is_none(tmp_path):
    """Where Hugging Face's package is not installed, `import kernels` from the checkout fails as a
    missing module would, naming the folder, instead of importing our kernels/ as a stranger."""
    code = "import sys; sys.path[:] = [sys.argv[1]] + [p for p in sys.path if 'site-packages' not in p]; import kernels"
    proc = subprocess.run([sys.executable, "-c", code, str(ROOT)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 1
    assert "ModuleNotFoundError: No module named 'kernels'" in proc.stderr and "is loopcoder.kernels" in proc.stderr


def _is_ours(module_file: str | None) -> bool:
    return bool(module_file) and Path(module_file).resolve().is_relative_to(ROOT / "kernels")
