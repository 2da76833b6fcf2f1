"""Where an app's files may go: inside the target folder only, and over nothing without `force`.

Everything is checked before the first byte is written, so a refused scaffold leaves
the folder as it was. A path escapes the folder through `..`, an absolute path, or a
symlink already in the folder that points out of it; each is refused by name.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Callable

from loopcoder.engine.errors import InvalidRequestError


class ScaffoldTargetError(InvalidRequestError):
    """The scaffold would write outside its folder, or over files it was not allowed to replace."""


def target_folder(out: str | Path) -> Path:
    """The folder `out` names, absolute; refused when it climbs with `..` or is a file."""
    text = str(out)
    if not text.strip():
        raise ScaffoldTargetError("the output folder is empty: give one with --out DIR")
    path = Path(text).expanduser()
    if ".." in path.parts:
        raise ScaffoldTargetError(f"the output folder {text!r} contains '..': give the folder without climbing out of it")
    if path.exists() and not path.is_dir():
        raise ScaffoldTargetError(f"the output folder {text!r} is a file, not a folder")
    return path.absolute()


def planned_paths(folder: Path, files: dict[str, str], force: bool) -> list[Path]:
    """The absolute path of every file, checked: inside `folder`, and new unless `force`."""
    root = folder.resolve()
    paths, existing = [], []
    for name in files:
        relative = PurePosixPath(name)
        if relative.is_absolute() or ".." in relative.parts or not relative.parts or "\\" in name:
            raise ScaffoldTargetError(f"refusing to write {name!r}: file names must stay inside the output folder")
        path = folder.joinpath(*relative.parts)
        if not path.resolve().is_relative_to(root):  # a symlink on the way points out of the folder
            raise ScaffoldTargetError(f"refusing to write {name!r}: it leads outside {folder} (through a symlink)")
        if path.exists() or path.is_symlink():
            if path.is_dir():
                raise ScaffoldTargetError(f"refusing to write {name!r}: a folder of that name is in the way")
            existing.append(name)
        paths.append(path)
    if existing and not force:
        shown = ", ".join(existing[:6]) + (f" and {len(existing) - 6} more" if len(existing) > 6 else "")
        raise ScaffoldTargetError(f"{folder} already has {shown}: pass --force to overwrite "
                                  "(the LSP command: \"force\": true), or choose an empty folder")
    return paths


def write_files(folder: Path, files: dict[str, str], force: bool = False,
                progress: Callable[[str], None] | None = None) -> list[Path]:
    """Write `files` (relative path -> text) under `folder`, after checking every path; returns the paths."""
    paths = planned_paths(folder, files, force)
    for path, text in zip(paths, files.values()):
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink():  # replaced, not followed (it points inside the folder: checked above)
            path.unlink()
        path.write_text(text, encoding="utf-8")
        if progress is not None:
            progress(str(path))
    return paths
