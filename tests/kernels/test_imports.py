"""kernels/ is a leaf: it imports nothing else of loopcoder (the engine imports the kernels,
never the other way round; docs/engine.md). Checked twice: in the source of every module,
with relative imports resolved, and in a fresh interpreter per module, which also shows
that each one imports first, on its own."""

import pytest

from ..import_rules import OUR_TOP_LEVEL, ROOT, imported_modules, loaded_by, module_name, sources, within

KERNELS = ROOT / "kernels"
SOURCES = sources("kernels")


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
    others = [m for m in loaded_by(name) if within(m, "loopcoder.engine", "loopcoder.lsp", "loopcoder.jupyter_ext")]
    assert not others, f"importing {name} loaded {others}"
