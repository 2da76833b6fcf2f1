"""What a module of ours imports, read from its source (tests/test_layout.py and
tests/kernels/test_imports.py hold the folders to docs/engine.md's import rules)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUR_TOP_LEVEL = ("engine", "kernels", "lsp", "jupyter_ext")  # folder names: never importable without `loopcoder.`


def sources(folder: str) -> list[Path]:
    return sorted(p for p in (ROOT / folder).rglob("*.py") if "node_modules" not in p.parts)


def module_name(path: Path) -> str:
    """kernels/attention/decode.py -> loopcoder.kernels.attention.decode; a package's __init__.py names the package."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return "loopcoder." + ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> list[str]:
    """The absolute name of everything the module's source imports, anywhere in it (functions,
    `if` blocks), relative imports resolved against its package; `from package import name`
    gives both `package` and `package.name`."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            found.append(node.module)
            found += [f"{node.module}.{alias.name}" for alias in node.names]  # a package's names: `engine.load_model`
        elif isinstance(node, ast.ImportFrom):
            parts = package.split(".")
            base = ".".join(parts[: len(parts) - node.level + 1]) if node.level <= len(parts) else ""
            targets = [node.module] if node.module else [alias.name for alias in node.names]
            found += [f"{base}.{target}" if base else target for target in targets]
    return found


def within(name: str, *prefixes: str) -> bool:
    """Whether module `name` is one of `prefixes` or inside one of them."""
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def loaded_by(module: str) -> list[str]:
    """Every module a fresh interpreter has loaded after importing `module` alone."""
    code = f"import json, sys; import {module}; print(json.dumps(sorted(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)
