"""The change set to review: files and hunks of new lines, from git, a unified diff, or whole files.

Diffs are parsed with `unidiff`. Lines are 1-based and counted in the new file (the
"right side" of a pull request), which is where findings are reported. Binary files and
deleted files have no new lines and are skipped; a renamed file is reviewed under its new
name; a diff written with CRLF line ends is read as well.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import unidiff

from loopcoder.engine.errors import InvalidRequestError

WHOLE_FILE_CHUNK = 60  # a whole file is reviewed in pieces of about this many lines
SOURCE_SUFFIXES = {".py", ".pyi", ".js", ".jsx", ".ts", ".tsx", ".go", ".rs", ".java", ".kt", ".c", ".h", ".cc",
                   ".cpp", ".hpp", ".cs", ".rb", ".php", ".swift", ".scala", ".sh", ".sql", ".lua"}
SKIPPED_DIRS = {".git", ".venv", "venv", "node_modules", "__pycache__", "build", "dist"}


@dataclass(frozen=True)
class DiffLine:
    kind: str  # "+" added, " " context, "-" removed
    new_line: int | None  # 1-based line in the new file; None for a removed line
    text: str  # without its line end


@dataclass(frozen=True)
class Hunk:
    path: str
    first: int  # the hunk's first line in the new file (1-based)
    last: int  # its last line there (inclusive); < first for a hunk that only removes
    lines: tuple[DiffLine, ...]

    @property
    def added(self) -> tuple[int, ...]:
        """The new file's lines this hunk adds or changes: the only lines a finding may point at."""
        return tuple(line.new_line for line in self.lines if line.kind == "+" and line.new_line is not None)


@dataclass(frozen=True)
class ChangedFile:
    path: str  # relative to the repository root, '/'-separated
    text: str | None  # the new file's content; None when it could not be read (a diff without the tree)
    hunks: tuple[Hunk, ...]

    @property
    def added(self) -> set[int]:
        return {n for hunk in self.hunks for n in hunk.added}


@dataclass(frozen=True)
class ChangeSet:
    files: list[ChangedFile]
    root: Path  # paths are relative to this
    commit: str | None = None  # the head commit, for a GitHub review's commit_id


# -- parsing ----------------------------------------------------------------------------------


def parse_diff(text: str) -> list[tuple[str, list[Hunk]]]:
    """(new path, hunks with new lines) for every file of a unified diff that has any."""
    if _crlf_headers(text):  # a diff saved with Windows line ends: unidiff wants "\n" headers
        text = text.replace("\r\n", "\n")
    try:
        patch = unidiff.PatchSet(io.StringIO(text))
    except unidiff.UnidiffParseError as e:
        raise InvalidRequestError(f"the diff is not a unified diff unidiff can read: {e}") from None
    if not len(patch) and text.strip() and not _is_git_header_only(text):
        raise InvalidRequestError("the input holds no unified diff (no '--- a/…', '+++ b/…' and '@@' lines)")
    files = []
    for patched in patch:
        if patched.is_binary_file or patched.is_removed_file:
            continue
        path = _strip_prefix(patched.target_file)
        hunks = [h for h in (_hunk(path, hunk) for hunk in patched) if h.added]
        if hunks:
            files.append((path, hunks))
    return files


def _hunk(path: str, hunk: unidiff.Hunk) -> Hunk:
    lines = tuple(DiffLine(line.line_type, line.target_line_no, line.value.rstrip("\r\n"))
                  for line in hunk if line.line_type in ("+", "-", " "))
    return Hunk(path, hunk.target_start, hunk.target_start + hunk.target_length - 1, lines)


def _strip_prefix(name: str) -> str:
    return name[2:] if name.startswith(("a/", "b/")) else name


def _crlf_headers(text: str) -> bool:
    first = text.split("\n", 1)[0]
    return first.endswith("\r")


def _is_git_header_only(text: str) -> bool:
    """A diff of only renames, mode changes or binary files: no hunks, and nothing wrong with it."""
    return text.lstrip().startswith("diff --git ")


# -- the three inputs ---------------------------------------------------------------------------


def from_diff(text: str, root: Path) -> ChangeSet:
    """A unified diff; the new files are read from `root` (the checked-out head) where present."""
    files = [ChangedFile(path, _read(root / path), tuple(hunks)) for path, hunks in parse_diff(text)]
    return ChangeSet(files, root)


def from_git(revisions: str, root: Path) -> ChangeSet:
    """`BASE..HEAD` or `BASE...HEAD` (from the merge base) in the git repository at `root`."""
    base, dots, head = revisions.partition("...") if "..." in revisions else revisions.partition("..")
    if not dots or not base:
        raise InvalidRequestError(f"--git wants a range BASE..HEAD (or BASE...HEAD), not {revisions!r}")
    head = head or "HEAD"
    top = Path(_git(root, "rev-parse", "--show-toplevel").strip())
    for rev in (base, head):
        _git(top, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}",
             what=f"{rev!r} of --git {revisions} is not a commit in {top}")
    diff = _git(top, "diff", "--no-color", "--no-ext-diff", "-M", "--src-prefix=a/", "--dst-prefix=b/",
                f"{base}{dots}{head}")
    commit = _git(top, "rev-parse", f"{head}^{{commit}}").strip()
    files = [ChangedFile(path, _git_show(top, commit, path), tuple(hunks)) for path, hunks in parse_diff(diff)]
    return ChangeSet(files, top, commit)


def from_paths(paths: list[Path], root: Path) -> ChangeSet:
    """Whole files (a directory: its source files), every line of them new."""
    files = []
    for path in _expand(paths):
        text = _read(path)
        if text is None:
            raise InvalidRequestError(f"cannot read {path}: not a UTF-8 text file")
        rel = _relative(path, root)
        lines = text.splitlines()
        chunks = [range(start, min(start + WHOLE_FILE_CHUNK, len(lines))) for start in range(0, len(lines), WHOLE_FILE_CHUNK)]
        hunks = tuple(Hunk(rel, chunk[0] + 1, chunk[-1] + 1, tuple(DiffLine("+", n + 1, lines[n]) for n in chunk))
                      for chunk in chunks)
        if hunks:
            files.append(ChangedFile(rel, text, hunks))
    return ChangeSet(files, root)


def _expand(paths: list[Path]) -> list[Path]:
    found = []
    for path in paths:
        if path.is_dir():
            for dirpath, dirnames, filenames in os.walk(path):
                dirnames[:] = sorted(d for d in dirnames if d not in SKIPPED_DIRS and not d.startswith("."))
                found += [Path(dirpath) / f for f in sorted(filenames) if Path(f).suffix in SOURCE_SUFFIXES]
        elif path.is_file():
            found.append(path)
        else:
            raise InvalidRequestError(f"{path} does not exist")
    return found


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def _read(path: Path) -> str | None:
    try:
        return path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None


# -- git --------------------------------------------------------------------------------------


def _git(cwd: Path, *args: str, what: str | None = None) -> str:
    git = shutil.which("git")
    if git is None:
        raise InvalidRequestError("--git needs git, and git is not on PATH")
    if not cwd.is_dir():
        raise InvalidRequestError(f"{cwd} is not a directory")
    done = subprocess.run([git, "-c", "core.quotepath=off", *args], cwd=cwd, capture_output=True)
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip()
        if "not a git repository" in message:
            raise InvalidRequestError(f"{cwd} is not inside a git repository: --git needs one (or use --diff FILE)")
        raise InvalidRequestError(what or f"git {' '.join(args)} failed: {message}")
    return done.stdout.decode("utf-8", "replace")


def _git_show(top: Path, commit: str, path: str) -> str | None:
    done = subprocess.run(["git", "show", f"{commit}:{path}"], cwd=top, capture_output=True)
    if done.returncode != 0:
        return None
    try:
        return done.stdout.decode("utf-8")
    except UnicodeDecodeError:
        return None
