"""Static analyzers: ruff and bandit on Python files, their results as review findings.

The files are written to a temporary tree (the head of `loopcoder review --git` need not
be checked out, and an editor's buffer need not be saved), with the ruff configuration
that applies to them copied beside them, and each analyzer runs once over all of them.
An analyzer that is not installed is noted, not an error: the review goes on without it.
Both reviews ground the model in these findings: `loopcoder review` in CI keeps those on
changed lines, the editor's review those on the reviewed lines.
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from .findings import ReviewFinding

CONFIG_FILES = ("pyproject.toml", "ruff.toml", ".ruff.toml")  # ruff finds its settings beside the files
PYTHON_SUFFIXES = (".py", ".pyi")
BANDIT_SEVERITY = {"HIGH": "error", "MEDIUM": "warning", "LOW": "info"}
TIMEOUT_S = 300


def executable(name: str) -> str | None:
    """`name` beside this Python (a virtual environment not on PATH), else on PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.is_file() else shutil.which(name)


def ruff_settings_folder(path: Path) -> Path | None:
    """The folder whose ruff settings apply to the file `path`: the nearest one above it with a
    `.ruff.toml`, a `ruff.toml`, or a `pyproject.toml` that has a `[tool.ruff]` table (ruff's own
    rule); None when there is none (ruff's defaults apply)."""
    for folder in path.parents:
        if (folder / ".ruff.toml").is_file() or (folder / "ruff.toml").is_file():
            return folder
        try:
            if "[tool.ruff" in (folder / "pyproject.toml").read_text(encoding="utf-8", errors="replace"):
                return folder
        except OSError:  # no pyproject.toml here, or one we may not read
            continue
    return None


def run_analyzers(files: dict[str, str], settings: Path | None,
                  notes: list[str]) -> tuple[list[ReviewFinding], list[str]]:
    """Findings of ruff and bandit on the Python files among `files` (path -> text, paths relative to
    `settings`), and the analyzers that ran, with their versions.

    `settings` is the folder whose ruff configuration files are copied beside the files; None
    for ruff's defaults. An analyzer that is missing or fails adds a line to `notes`.
    """
    python = {path: text for path, text in files.items() if path.endswith(PYTHON_SUFFIXES)}
    if not python:
        return [], []
    found: list[ReviewFinding] = []
    ran: list[str] = []
    with tempfile.TemporaryDirectory(prefix="loopcoder-review-") as tmp:
        tree = Path(tmp)
        for name in CONFIG_FILES if settings is not None else ():
            if (settings / name).is_file():
                shutil.copyfile(settings / name, tree / name)
        for path, text in python.items():
            (tree / path).parent.mkdir(parents=True, exist_ok=True)
            (tree / path).write_text(text, encoding="utf-8")
        paths = list(python)
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
    return [f for f in found if f.path in python], ran


def _run(name: str, argv: list[str], cwd: Path, notes: list[str]) -> dict | list | None:
    try:
        done = subprocess.run(argv, cwd=cwd, capture_output=True, timeout=TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as e:
        notes.append(f"{name} could not run: {e}")
        return None
    output = done.stdout.decode("utf-8", "replace").strip()
    try:
        if output:  # both print JSON whenever they ran, "[]" for no findings
            return json.loads(output)
    except json.JSONDecodeError:
        pass
    error = [line.strip() for line in done.stderr.decode("utf-8", "replace").splitlines() if line.strip()]
    said = " ".join(dict.fromkeys(error[:2] + error[-1:]))  # ruff: its first causes; a traceback: its error
    notes.append(f"{name} failed (exit {done.returncode}): {said or 'no output'}")
    return None


@functools.lru_cache(maxsize=None)
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
