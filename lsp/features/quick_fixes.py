"""Which fix the editor offers for a review finding, if any.

An editor's quick fix replaces the finding's one line (the language server's edit and
JupyterLab's *Apply fix* both do), so a fix is offered only where it is sound there:

- it replaces the finding's own line, and only that line (a ruff fix over several lines,
  or one that deletes lines, is reported by `loopcoder review` in CI, not offered here);
- it is an edit of that line, not other code: it keeps at least one of the line's names
  (small models paste another line's code as the "fix");
- a Python file still parses with it (other languages: what we cannot check, we do not).

For SQL built from strings and passed to `execute`, the parameterized query
(`parameterized_query`) comes first: it is derived from the code, not guessed.
"""

from __future__ import annotations

import ast
import keyword
import re

from .findings import ReviewFinding
from .parameterized_query import parameterized

_NAME = re.compile(r"[^\W\d]\w*")


def quick_fix(lines: list[str], f: ReviewFinding, language: str) -> str | None:
    """The new text of line `f.line` that fixes `f` in the document `lines`, or None for no sound fix."""
    python = language == "python"
    candidates = []
    if python and f.category == "security":
        query = parameterized("\n".join(lines), f.line, f.end_line)
        if query is not None and query[0] == query[1] == f.line:
            candidates.append(query[2])
    if f.replacement and f.line == f.end_line:
        candidates.append(f.replacement)
    line = f.line - 1
    for fix in candidates:
        if edits_its_line(lines[line], fix) and (not python or parses_with(lines, line, fix)):
            return fix
    return None


def edits_its_line(original: str, fix: str) -> bool:
    """Whether `fix` edits `original` rather than replacing it with other code: it keeps one of its
    names. A line without names (a bracket, a blank line) passes: only parsing can check its fix."""
    names = _names(original)
    return not names or bool(names & _names(fix))


def _names(code: str) -> set[str]:
    return {name for name in _NAME.findall(code) if not keyword.iskeyword(name)}


def parses_with(lines: list[str], line: int, fix: str) -> bool:
    """Whether the document `lines` parses as Python with line `line` (0-based) replaced by `fix`."""
    return parses("\n".join(lines[:line] + [fix] + lines[line + 1 :]))


def parses(text: str) -> bool:
    """Whether `text` parses as Python (a notebook cell's top-level `await` does: that is a compile-time check)."""
    try:
        ast.parse(text)
    except (SyntaxError, ValueError):  # ValueError: a NUL byte
        return False
    return True
