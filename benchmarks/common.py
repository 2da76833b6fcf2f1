"""Helpers shared by the benchmark scripts: statistics, machine facts, tables, plots, JSON.

Imported as `common` by scripts run from this directory (`python benchmarks/X.py` puts
the script's folder first on sys.path).
"""

from __future__ import annotations

import ast
import bisect
import importlib.util
import json
import os
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from loopcoder.engine.hardware import cpu_model


def percentile(values: Sequence[float], q: float) -> float:
    """Linearly interpolated percentile; NaN for no values (a variant that did not run)."""
    if not values:
        return float("nan")
    return float(np.percentile(np.asarray(values, dtype=float), q))


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


def machine_info() -> dict:
    import torch

    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
    }


def fmt(value: float, digits: int = 0) -> str:
    """A table cell: '—' for a missing (NaN) number."""
    if value != value:  # NaN
        return "—"
    return f"{value:,.{digits}f}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def save_figure(fig, paths: Sequence[Path]) -> None:
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120, bbox_inches="tight")


def new_figure(width: float = 9, height: float = 5):
    """A figure on the Agg backend: benchmarks run headless (CI, ssh)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height))


# Big modules of every CPython 3.10+, none with `from __future__` (it must open a file).
STDLIB_MODULES = ("argparse", "subprocess", "tarfile", "zipfile")


def line_offsets(source: str) -> list[int]:
    """Where lines 1, 2, ... of `source` start, numbered as ast numbers them (`splitlines`
    would also break at form feeds), then len(source): line n ends where line n+1 starts."""
    return [0] + [i + 1 for i, char in enumerate(source) if char == "\n"] + [len(source)]


def statement_ends(source: str) -> list[int]:
    """Character offsets just past each statement of `source` that is top-level, directly
    in a top-level class, or directly in the body of a top-level function or method: the
    places a file being written can stop and still parse."""
    line_starts = line_offsets(source)
    ends = set()
    for node in ast.parse(source).body:
        for child in node.body if isinstance(node, ast.ClassDef) else [node]:
            ends.add(line_starts[child.end_lineno])
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                ends.update(line_starts[stmt.end_lineno] for stmt in child.body)
        ends.add(line_starts[node.end_lineno])
    return sorted(ends)


def stdlib_source(target_tokens: int, count_tokens: Callable[[str], int],
                  modules: Sequence[str] = STDLIB_MODULES) -> tuple[str, list[str]]:
    """About `target_tokens` tokens of real Python from the running interpreter's stdlib.

    Whole modules one after another, the last one cut at the first `statement_ends`
    offset with at least `target_tokens` tokens before it, so the text parses and ends
    with a whole statement. Returns the text and the modules used. Deterministic for a
    given Python version.
    """
    text = ""
    for used, name in enumerate(modules, 1):
        source = Path(importlib.util.find_spec(name).origin).read_text(encoding="utf-8")
        if count_tokens(text + source) < target_tokens:
            text += source
            continue
        ends = statement_ends(source)
        # Token counts grow with the cut, so a binary search finds it.
        index = bisect.bisect_left(ends, target_tokens, key=lambda end: count_tokens(text + source[:end]))
        return text + source[: ends[min(index, len(ends) - 1)]], list(modules[:used])
    raise ValueError(f"{', '.join(modules)} hold fewer than {target_tokens} tokens together")
