"""Grounding: ruff and bandit on the changed Python files, their findings kept on changed lines.

The new files are written to a temporary tree (the head of `--git` need not be checked
out), with the repository's own ruff and bandit configuration files beside them, and
each analyzer runs once over all of them. An analyzer that is not installed is noted in
the report, not an error: the review goes on without it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from .diff import ChangedFile
from .findings import ReviewFinding

CONFIG_FILES = ("pyproject.toml", "ruff.toml", ".ruff.toml")  # ruff finds its settings beside the files
PYTHON_SUFFIXES = (".py", ".pyi")
BANDIT_SEVERITY = {"HIGH": "error", "MEDIUM": "warning", "LOW": "info"}
TIMEOUT_S = 300


def executable(name: str) -> str | None:
    """`name` beside this Python (a virtual environment not on PATH), else on PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.is_file() else shutil.which(name)


def run_analyzers(files: list[ChangedFile], root: Path, notes: list[str]) -> tuple[list[ReviewFinding], list[str]]:
    """Findings of ruff and bandit on the changed lines of `files`, and the analyzers that ran."""
    python = [f for f in files if f.path.endswith(PYTHON_SUFFIXES) and f.text is not None]
    if not python:
        return [], []
    found: list[ReviewFinding] = []
    ran: list[str] = []
    with tempfile.TemporaryDirectory(prefix="loopcoder-review-") as tmp:
        tree = Path(tmp)
        for name in CONFIG_FILES:
            if (root / name).is_file():
                shutil.copyfile(root / name, tree / name)
        for f in python:
            (tree / f.path).parent.mkdir(parents=True, exist_ok=True)
            (tree / f.path).write_text(f.text, encoding="utf-8")
        paths = [f.path for f in python]
        for name, command, parse in (
            ("ruff", ["check", "--output-format", "json", "--no-cache", "--exit-zero", "--force-exclude", *paths],
             ruff_findings),
            ("bandit", ["-f", "json", "-q", *paths], bandit_findings),
        ):
            exe = executable(name)
            if exe is None:
                notes.append(f"{name} is not installed: its checks were skipped (pip install {name})")
                continue
            output = _run(name, [exe, *command], tree, notes)
            if output is None:
                continue
            ran.append(f"{name} {_version(exe)}")
            found += parse(output, tree)
    by_path = {f.path: f for f in python}
    return [f for f in found if f.path in by_path and f.line in by_path[f.path].added], ran


def _run(name: str, argv: list[str], cwd: Path, notes: list[str]) -> dict | list | None:
    try:
        done = subprocess.run(argv, cwd=cwd, capture_output=True, timeout=TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as e:
        notes.append(f"{name} could not run: {e}")
        return None
    try:
        return json.loads(done.stdout.decode("utf-8", "replace") or "null")
    except json.JSONDecodeError:
        error = done.stderr.decode("utf-8", "replace").strip().splitlines()
        notes.append(f"{name} failed (exit {done.returncode}): {error[-1] if error else 'no output'}")
        return None


def _version(exe: str) -> str:
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, timeout=30).stdout.decode().split()
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return next((word for word in out if word[:1].isdigit()), "")


def _relative(name: str, tree: Path) -> str:
    path = Path(name)
    return (path.relative_to(tree) if path.is_absolute() else path).as_posix().removeprefix("./")


# -- ruff ---------------------------------------------------------------------------------------


def ruff_category(code: str) -> tuple[str, str]:
    """(category, severity) of a ruff rule code."""
    if code.startswith("S"):  # flake8-bandit
        return "security", "warning"
    if code.startswith("PERF"):
        return "performance", "info"
    if code.startswith(("E9", "F63", "F7", "F82")):  # syntax errors, undefined names: the code will not run
        return "bug", "error"
    if code.startswith(("B", "PLE", "F")):
        return ("bug", "warning") if not code.startswith("F") else ("style", "warning")
    return "style", "info"


def ruff_findings(output, tree: Path) -> list[ReviewFinding]:
    found = []
    for item in output or []:
        code = item.get("code") or "syntax"
        category, severity = ruff_category(code)
        path = _relative(item["filename"], tree)
        line = item["location"]["row"]
        replacement = None
        end_line = line
        fix = item.get("fix")
        if fix and fix.get("applicability") == "safe":
            text = (tree / path).read_text(encoding="utf-8")
            fixed = apply_fix(text, fix["edits"])
            if fixed is not None:
                line, end_line, replacement = fixed
        found.append(ReviewFinding(path, line, end_line, severity, category, item["message"], replacement,
                                   rules=(f"ruff:{code}",), sources=("ruff",), help_uri=item.get("url") or ""))
    return found


def apply_fix(text: str, edits: list[dict]) -> tuple[int, int, str] | None:
    """Ruff's fix as whole lines: (first line, last line, their new text; "" deletes them), or None."""
    if not edits:
        return None
    old = text.split("\n")
    starts = [0]
    for line in old:
        starts.append(starts[-1] + len(line) + 1)

    def offset(loc: dict) -> int:
        return starts[loc["row"] - 1] + loc["column"] - 1

    first = min(e["location"]["row"] for e in edits)
    end = max((e["end_location"] for e in edits), key=lambda loc: (loc["row"], loc["column"]))
    last = end["row"] - 1 if end["column"] == 1 and end["row"] > first else end["row"]  # ends at a line start
    fixed = text
    for e in sorted(edits, key=lambda e: offset(e["location"]), reverse=True):
        fixed = fixed[: offset(e["location"])] + e["content"] + fixed[offset(e["end_location"]) :]
    new = fixed.split("\n")
    region = new[first - 1 : last + len(new) - len(old)]  # lines outside first..last are untouched
    if region == old[first - 1 : last]:
        return None
    return first, last, "\n".join(region)


# -- bandit -------------------------------------------------------------------------------------


def bandit_findings(output, tree: Path) -> list[ReviewFinding]:
    found = []
    for item in (output or {}).get("results", []):
        lines = item.get("line_range") or [item["line_number"]]
        found.append(ReviewFinding(
            _relative(item["filename"], tree), item["line_number"], max(item["line_number"], max(lines)),
            BANDIT_SEVERITY.get(item.get("issue_severity", ""), "warning"), "security", item["issue_text"],
            rules=(f"bandit:{item['test_id']}",), sources=("bandit",), help_uri=item.get("more_info") or ""))
    return found
