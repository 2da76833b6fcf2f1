"""What the model sees around a hunk: the file's imports, then the enclosing function or class.

For Python the enclosing scope comes from `ast`: the innermost function or class that
holds the whole hunk. A scope too long to show, a hunk across scopes, a file that does
not parse, and every other language get a window of lines around the hunk instead.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

from .diff import Hunk

WINDOW = 12  # lines shown above and below a hunk without a scope
MAX_SCOPE_LINES = 150  # a longer scope is shown as a window
MAX_IMPORT_LINES = 30
_IMPORT_LINE = re.compile(r"^\s*(import\s|from\s+\S+\s+import\s|#include\s|using\s|require\s*\(|use\s|package\s)"
                          r"|\brequire\(['\"]")
LANGUAGES = {".py": "python", ".pyi": "python", ".js": "javascript", ".jsx": "javascript", ".ts": "typescript",
             ".tsx": "typescript", ".go": "go", ".rs": "rust", ".java": "java", ".kt": "kotlin", ".c": "c",
             ".h": "c", ".cc": "cpp", ".cpp": "cpp", ".hpp": "cpp", ".cs": "csharp", ".rb": "ruby", ".php": "php",
             ".swift": "swift", ".sh": "shell", ".sql": "sql", ".lua": "lua"}


@dataclass(frozen=True)
class HunkContext:
    imports: list[str]  # the file's import lines, in order
    first: int  # the shown span of the new file, 1-based, inclusive
    last: int
    scope: str  # "function f", "class C", or "lines 10-40"


def language_of(path: str) -> str:
    suffix = path[path.rfind("."):] if "." in path.rsplit("/", 1)[-1] else ""
    return LANGUAGES.get(suffix.lower(), "")


def hunk_context(path: str, text: str | None, hunk: Hunk) -> HunkContext | None:
    """The context of `hunk` in the new file `text`; None without the file (the hunk's own lines must do)."""
    if text is None:
        return None
    lines = text.splitlines()
    if not lines:
        return None
    first, last = max(1, hunk.first), min(len(lines), max(hunk.last, hunk.first))
    tree = _parse(text) if language_of(path) == "python" else None
    if tree is not None:
        scope = enclosing_scope(tree, first, last)
        if scope is not None and scope[1] - scope[0] < MAX_SCOPE_LINES:
            return HunkContext(python_imports(tree, lines), scope[0], scope[1], scope[2])
        imports = python_imports(tree, lines)
    else:
        imports = [line for line in lines if _IMPORT_LINE.search(line)][:MAX_IMPORT_LINES]
    start, end = max(1, first - WINDOW), min(len(lines), last + WINDOW)
    return HunkContext(imports, start, end, f"lines {start}-{end}")


def _parse(text: str) -> ast.Module | None:
    try:
        return ast.parse(text)
    except (SyntaxError, ValueError):  # a file mid-edit, or with a NUL byte: fall back to a window
        return None


def enclosing_scope(tree: ast.Module, first: int, last: int) -> tuple[int, int, str] | None:
    """(first line, last line, name) of the innermost function or class holding lines first..last."""
    best = None
    for node in ast.walk(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        start = min([node.lineno] + [d.lineno for d in node.decorator_list])
        end = node.end_lineno or node.lineno
        if start <= first and last <= end and (best is None or end - start < best[1] - best[0]):
            kind = "class" if isinstance(node, ast.ClassDef) else "function"
            best = (start, end, f"{kind} {node.name}")
    return best


def python_imports(tree: ast.Module, lines: list[str]) -> list[str]:
    """The module's top-level import statements as written (each may span lines)."""
    shown: list[str] = []
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            shown += lines[node.lineno - 1 : (node.end_lineno or node.lineno)]
    return shown[:MAX_IMPORT_LINES]
