"""GPU kernels (Triton) with pure-torch references; CPU always takes the reference.

This folder is `loopcoder.kernels`. A Python started in the checkout has the repository
root on sys.path, where this folder would pass for a top-level `kernels`: the name of
Hugging Face's package, which transformers imports. Imported under that name, it hands
the name to the package that owns it, or says why there is none.
"""

import importlib.machinery
import importlib.util
import sys
from pathlib import Path


def _yield_the_name_kernels() -> None:
    root = Path(__file__).resolve().parents[1]
    elsewhere = [p for p in sys.path if Path(p or ".").resolve() != root]
    spec = importlib.machinery.PathFinder.find_spec("kernels", elsewhere)
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError(f"No module named 'kernels' ({root / 'kernels'} is loopcoder.kernels, found "
                                  "only because the repository root is on sys.path)", name="kernels")
    module = importlib.util.module_from_spec(spec)
    sys.modules["kernels"] = module  # the import statement returns what sys.modules holds
    spec.loader.exec_module(module)


if __name__ == "kernels":
    _yield_the_name_kernels()
