"""kernels/ is a leaf: it imports nothing else of loopcoder (the engine imports the kernels,
never the other way round; docs/engine.md). Checked twice: in the source of every module,
with relative imports resolved, and in a fresh interpreter per module, which also shows
that each one imports first, on its own."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

KERNELS = Path(__file__).resolve().parents[2] / "kernels"
SOURCES = sorted(KERNELS.rglob("*.py"))
OUR_TOP_LEVEL = ("engine", "kernels", "lsp", "jupyter_ext")  # folder names: never importable without `loopcoder.`


def module_name(path: Path) -> str:
    """kernels/attention/decode.py -> loopcoder.kernels.attention.decode; a package's __init__.py names the package."""
    parts = path.relative_to(KERNELS.parent).with_suffix("").parts
    return "loopcoder." + ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> list[str]:
    """The absolute name of everything the module's source imports, anywhere in it (functions,
    `if` blocks), relative imports resolved against its package."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            found.append(node.module)
        elif isinstance(node, ast.ImportFrom):
            parts = package.split(".")
            base = ".".join(parts[: len(parts) - node.level + 1]) if node.level <= len(parts) else ""
            targets = [node.module] if node.module else [alias.name for alias in node.names]
            found += [f"{base}.{target}" if base else target for target in targets]
    return found


def test_the_resolver_sees_relative_and_absolute_imports():
    imports = imported_modules(KERNELS / "attention" / "__init__.py")
    assert "loopcoder.kernels.dispatch" in imports and "loopcoder.kernels.attention.decode" in imports
    assert "torch" in imports


def outside_kernels(name: str) -> bool:
    """Whether an imported module is ours but not kernels/ (or a folder imported by its bare name)."""
    if name.split(".")[0] in OUR_TOP_LEVEL:
        return True
    ours = name == "loopcoder" or name.startswith("loopcoder.")
    return ours and not (name == "loopcoder.kernels" or name.startswith("loopcoder.kernels."))


def test_the_check_catches_a_way_out():
    assert [outside_kernels(n) for n in ("loopcoder.engine.errors", "loopcoder", "engine.errors", "loopcoder.lsp")] == [
        True] * 4
    assert not any(outside_kernels(n) for n in ("loopcoder.kernels.dispatch", "loopcoder.kernels", "torch", "triton"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(KERNELS)))
def test_kernels_import_nothing_else_of_ours(path):
    outside = [name for name in imported_modules(path) if outside_kernels(name)]
    assert not outside, f"{path.relative_to(KERNELS.parent)} imports {outside}"


@pytest.mark.parametrize("name", [module_name(p) for p in SOURCES])
def test_each_kernels_module_imports_first_without_the_engine(name):
    others = ("loopcoder.engine", "loopcoder.lsp", "loopcoder.jupyter_ext")
    code = f"import sys; import {name}\nprint([m for m in sys.modules if m.startswith({others!r})])"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]", f"importing {name} loaded {proc.stdout.strip()}"
