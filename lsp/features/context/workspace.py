"""The workspace index: which files of the editor's workspace folders completions may read, and their text.

`WorkspaceIndex(roots)` walks every root breadth first (shallow files first, so that a
limit keeps the ones nearest the top) in `build()`, which the LSP server runs on a worker
thread; `update()` and `remove()` follow saves and watched-file events afterwards. A file
is indexed when every rule below lets it through, in this order; `allowed()` says which
rule refused one, with the reason strings defined below:

- it lies inside a root, after resolving symlinked folders (`outside the workspace`), and a
  symlinked file's target does too (`symlink leaves the workspace`); symlinked folders are
  never descended (their targets inside the roots are walked as themselves), so a symlink
  loop cannot hang the walk;
- nothing in a `.git` folder (`git metadata`);
- git's ignore rules: `.gitignore` in every folder, each applying to its own subtree and the
  deeper one winning, `.git/info/exclude` of a repository inside the roots, and a
  `.loopcoderignore` in any folder (same syntax, above that folder's `.gitignore`). The
  patterns are pathspec's gitwildmatch (`pathspec.GitIgnoreSpec`), so negation and
  folder-only patterns behave as git's; as in git, a file inside an ignored folder cannot be
  re-included (the folder is not descended). Ignore files outside the roots (a parent
  folder's `.gitignore`, the user's global excludes, a worktree's `.git/info/exclude` in the
  main checkout) are not read: nothing outside the roots is;
- not a secret by name (`SECRET_PATTERNS`), for the link and for its target;
- a regular file (`not a regular file`: FIFOs, sockets, devices are never opened), at most
  `max_file_bytes` (`too large`), with no NUL byte in its first 8 KiB (`binary`), valid
  UTF-8 (`not UTF-8`), readable (`unreadable`, logged), still there (`gone`).

At most `max_files` files are indexed: the walk keeps the first `max_files` candidates and
counts the rest under `over the file limit` (binaries and the like found among the kept
candidates when they are read still use up their place). The text cache is an LRU of at
most `max_total_bytes` bytes of file content, each entry keyed by the file's
`(st_mtime_ns, st_size)`; `text()` re-reads a file whose stamp changed.

Keys are absolute POSIX paths of the file as found in the walk: its folders resolved, a
symlinked file kept as the link. Thread-safe: `text()`, `update()` and the rest may be
called while `build()` runs on another thread; a second `build()` swaps in a fresh index
when it finishes (the old one serves meanwhile) and replays the events that came during it.
A cancelled build leaves the previous index (and `ready`) as they were.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path, PurePath
from typing import NamedTuple

import pathspec

log = logging.getLogger(__name__)

# Files never read, matched (case-insensitively) against the file's name with gitwildmatch
# patterns: environment files, private keys and certificates' key stores, and the
# credential files of git, npm, PyPI and the rest. `*secret*` also refuses source files such
# as `secret_scanner.py`: a missed completion is cheaper than a leaked key.
SECRET_PATTERNS = (
    ".env", ".env.*",                            # dotenv files (.env.local, .env.production, ...)
    "*.pem", "*.key", "*.p12", "*.pfx",          # private keys, certificates with their keys
    "id_rsa*", "id_ed25519*",                    # SSH keys and their .pub
    ".netrc", ".npmrc", ".pypirc",               # credentials of curl/git, npm, PyPI
    "credentials*",                              # AWS, gcloud, ...: credentials, credentials.json
    "*secret*",                                  # secrets.yaml, client_secret.json, ...
)
_SECRETS = pathspec.GitIgnoreSpec.from_lines(SECRET_PATTERNS)

# The ignore files read in each folder, highest precedence first (`.git/info/exclude` only
# where the folder holds a `.git` folder).
IGNORE_FILES = (".loopcoderignore", ".gitignore")
GIT_EXCLUDE = (".git", "info", "exclude")
MAX_IGNORE_FILE_BYTES = 1024 * 1024
BINARY_SNIFF_BYTES = 8 * 1024
_PROGRESS_SECONDS = 0.1

# Why a path is not indexed (`allowed()`, `stats()["skipped"]`); an ignore rule's reason
# names its file: "ignored by .gitignore", "ignored by .loopcoderignore", "ignored by .git/info/exclude".
IGNORED_BY = "ignored by {}"
OUTSIDE = "outside the workspace"
LEAVES = "symlink leaves the workspace"
GIT_METADATA = "git metadata"
SECRET = "secret"
NOT_REGULAR = "not a regular file"
TOO_LARGE = "too large"
BINARY = "binary"
NOT_UTF8 = "not UTF-8"
UNREADABLE = "unreadable"
GONE = "gone"
BROKEN_LINK = "broken symlink"
SYMLINKED_FOLDER = "symlinked folder"
OVER_LIMIT = "over the file limit"

# Rules of one folder: (its path's parts under the root, ((source, spec), ...) highest precedence first).
Frame = tuple[tuple[str, ...], tuple[tuple[str, pathspec.GitIgnoreSpec], ...]]


class _Entry(NamedTuple):
    root: str
    relative: str
    mtime_ns: int
    size: int


class _Cached(NamedTuple):
    stamp: tuple[int, int]
    text: str
    size: int


class _Read(NamedTuple):
    reason: str
    text: str | None = None
    stamp: tuple[int, int] | None = None


def is_secret(name: str) -> bool:
    """Whether a file of this name is never read (`SECRET_PATTERNS`)."""
    return _SECRETS.match_file(name.lower())


def _posix(path: str) -> str:
    return PurePath(path).as_posix()


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _stamp(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


def _ignore_reason(frames: Sequence[Frame], parts: tuple[str, ...], is_dir: bool) -> str | None:
    """The ignore rule that refuses `parts` (a path under the root), or None: the deepest
    folder's rules first, in each the highest-precedence file first, the first file with a
    matching pattern deciding (its last match: an ignore, or a `!` re-include)."""
    for base, specs in reversed(frames):
        sub = "/".join(parts[len(base):]) + ("/" if is_dir else "")
        for source, spec in specs:
            include = spec.check_file(sub).include
            if include is not None:
                return IGNORED_BY.format(source) if include else None
    return None


class WorkspaceIndex:
    """The files of the workspace folders `roots` that completions may read (module docstring)."""

    def __init__(self, roots: Sequence[Path | str], *, max_file_bytes: int = 512 * 1024, max_files: int = 20_000,
                 max_total_bytes: int = 64 * 1024 * 1024):
        self.max_file_bytes = max_file_bytes
        self.max_files = max_files
        self.max_total_bytes = max_total_bytes
        # Every root as given (absolute) and resolved: paths may name either.
        self._aliases: list[tuple[str, str]] = []
        for root in roots:
            given = os.path.abspath(os.fspath(root))
            self._aliases.append((given, os.path.realpath(given)))
        # The walked roots: resolved, a root inside another one left to the outer one.
        self._roots: list[str] = []
        for real in sorted({real for _, real in self._aliases}, key=len):
            if not any(_inside(real, outer) for outer in self._roots):
                self._roots.append(real)
        self._lock = threading.RLock()
        self._build_lock = threading.Lock()
        self._files: dict[str, _Entry] = {}
        self._sorted: list[str] | None = None
        self._cache: OrderedDict[str, _Cached] = OrderedDict()
        self._cached_bytes = 0
        self._rules: dict[str, tuple[tuple, tuple]] = {}
        self._skipped: dict[str, int] = {}
        self._build_seconds: float | None = None
        self._ready = False
        self._pending: set[str] | None = None  # paths updated or removed while a build runs

    # -- the public interface -------------------------------------------------------------

    def build(self, progress: Callable[[int, int], None] | None = None,
              cancelled: Callable[[], bool] | None = None) -> None:
        """Walk every root and read what the rules let through, in the caller's thread.
        `progress(done, total)` follows the reading (0 of total once the walk has listed the
        candidates, total of total at the end); `cancelled()` is asked between folders and
        files, and a cancelled build changes nothing. A second build refreshes the index."""
        cancelled = cancelled or (lambda: False)
        with self._build_lock:
            started = time.perf_counter()
            with self._lock:
                self._pending = set()
            built = None
            try:
                built = self._build(progress, cancelled)
            finally:
                with self._lock:
                    pending, self._pending = self._pending, None
                    if built is not None:
                        self._install(*built, time.perf_counter() - started, pending)

    @property
    def ready(self) -> bool:
        """A build has finished at least once."""
        return self._ready

    def files(self) -> list[str]:
        """The indexed files' keys (absolute POSIX paths), sorted."""
        with self._lock:
            if self._sorted is None:
                self._sorted = sorted(self._files)
            return list(self._sorted)

    def key(self, path: str | Path) -> str | None:
        """The key `path` has here (absolute POSIX, its folders resolved), None outside every root."""
        located = self._locate(path)
        return None if isinstance(located, str) else located[0]

    def relative(self, path: str | Path) -> str | None:
        """`path` relative to its root as POSIX, for prompts (its folders resolved, as in its
        key); None outside every root."""
        found = self._locate(path)
        if isinstance(found, tuple):
            return "/".join(found[2])
        mapped = self._lexical(path)  # a symlinked folder leaving the workspace: the path as named
        return None if mapped is None else "/".join(Path(os.path.relpath(mapped, self._root_of(mapped) or mapped)).parts)

    def text(self, path: str | Path) -> str | None:
        """The file's text, from the cache while its (mtime, size) is unchanged; None where
        the rules refuse it, or it is gone, unreadable or not UTF-8."""
        found = self._locate(path)
        if isinstance(found, str):
            return None
        key, root, parts = found
        try:
            st = os.stat(key)
        except OSError:
            return None
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and hit.stamp == (st.st_mtime_ns, st.st_size):
                self._cache.move_to_end(key)
                return hit.text
        read = self._admit(key, root, parts)
        if read.text is None:
            return None
        with self._lock:
            self._remember(key, read)
            if key in self._files:
                self._files[key] = _Entry(root, "/".join(parts), *read.stamp)
        return read.text

    def allowed(self, path: str | Path) -> tuple[bool, str]:
        """(True, "") when the rules let the file through (reading it to know), else
        (False, the reason): one of this module's reason strings."""
        found = self._locate(path)
        if isinstance(found, str):
            return False, found
        key, root, parts = found
        read = self._admit(key, root, parts)
        if read.text is None:
            return False, read.reason
        with self._lock:
            self._remember(key, read)
        return True, ""

    def update(self, path: str | Path) -> None:
        """A file (or folder) was created, changed or saved: check it again and index it or
        drop it. A changed ignore file re-walks its folder's subtree; so does a folder."""
        found = self._locate(path)
        if isinstance(found, str):
            log.debug("workspace index: not updating %s: %s", path, found)
            return
        key, root, parts = found
        with self._lock:
            if self._pending is not None:
                self._pending.add(key)
        if not os.path.lexists(key):  # deleted after all (or before the event came)
            self._drop_tree(key)
        elif parts and parts[-1] in IGNORE_FILES:
            self._rewalk(root, parts[:-1])
        elif parts[-3:] == GIT_EXCLUDE:
            self._rewalk(root, parts[:-3])
        elif not parts or (os.path.isdir(key) and not os.path.islink(key)):
            self._rewalk(root, parts)
        else:
            read = self._admit(key, root, parts)
            with self._lock:
                if read.text is None:
                    self._drop(key)
                else:
                    self._add(key, root, parts, read)

    def remove(self, path: str | Path) -> None:
        """A file or folder was deleted: drop it (a folder: everything under it)."""
        found = self._locate(path)
        if isinstance(found, str):
            return
        key = found[0]
        with self._lock:
            if self._pending is not None:
                self._pending.add(key)
            self._drop_tree(key)

    def stats(self) -> dict:
        """The index in numbers; `skipped` counts the last build's refusals by reason (an
        ignored folder counts once, not its files)."""
        with self._lock:
            return {
                "roots": [_posix(root) for root in self._roots],
                "files": len(self._files),
                "bytes_indexed": sum(entry.size for entry in self._files.values()),
                "bytes_cached": self._cached_bytes,
                "files_cached": len(self._cache),
                "skipped": dict(self._skipped),
                "build_seconds": self._build_seconds,
                "ready": self._ready,
            }

    # -- the walk ---------------------------------------------------------------------------

    def _install(self, files: dict[str, _Entry], counts: Counter, seconds: float, pending: set[str]) -> None:
        """Swap in a finished build (under self._lock), then replay the events that came during it."""
        self._files, self._sorted = files, None
        for key in [key for key in self._cache if key not in files]:
            self._forget(key)
        self._skipped = dict(sorted(counts.items()))
        self._build_seconds = seconds
        self._ready = True
        for path in sorted(pending):  # checked again on disk: an update or a removal alike
            self.update(path)
        log.info("workspace index: %d files in %.2f s, skipped %s", len(self._files), seconds, self._skipped)

    def _build(self, progress: Callable[[int, int], None] | None,
               cancelled: Callable[[], bool]) -> tuple[dict[str, _Entry], Counter] | None:
        counts: Counter = Counter()
        candidates: list[tuple[str, str, tuple[str, ...]]] = []
        for root in self._roots:
            if not os.path.isdir(root):
                log.warning("workspace index: root %s is not a folder", root)
                continue
            for key, parts in self._walk(root, (), counts, cancelled):
                if len(candidates) < self.max_files:
                    candidates.append((key, root, parts))
                else:
                    counts[OVER_LIMIT] += 1
        if cancelled():
            return None
        total, files, reported = len(candidates), {}, time.monotonic()
        if progress:
            progress(0, total)
        for done, (key, root, parts) in enumerate(candidates, 1):
            if cancelled():
                return None
            read = self._read(key, follow=os.path.islink(key))
            if read.text is None:
                counts[read.reason] += 1
            else:
                files[key] = _Entry(root, "/".join(parts), *read.stamp)
                with self._lock:
                    self._remember(key, read)
            if progress and done < total and time.monotonic() - reported >= _PROGRESS_SECONDS:
                progress(done, total)
                reported = time.monotonic()
        if progress:
            progress(total, total)
        return files, counts

    def _walk(self, root: str, start: tuple[str, ...], counts: Counter,
              cancelled: Callable[[], bool]) -> Iterator[tuple[str, tuple[str, ...]]]:
        """The candidate files under root/start, breadth first, names sorted: every rule but
        the reading ones applied, each refusal counted. Ignored folders are not entered."""
        frames, reason = self._frames_to(root, start)
        if reason:
            return
        queue: deque[tuple[tuple[str, ...], tuple[Frame, ...]]] = deque([(start, frames)])
        while queue and not cancelled():
            parts, frames = queue.popleft()
            folder = os.path.join(root, *parts)
            try:
                with os.scandir(folder) as listing:
                    entries = sorted(listing, key=lambda entry: entry.name)
            except FileNotFoundError:
                continue
            except OSError as exc:
                log.info("workspace index: cannot list %s: %s", folder, exc)
                counts[UNREADABLE] += 1
                continue
            for entry in entries:
                child = parts + (entry.name,)
                link = entry.is_symlink()
                if link and os.path.isdir(entry.path):
                    target = self._root_of(os.path.realpath(entry.path))
                    counts[LEAVES if target is None else SYMLINKED_FOLDER] += 1
                elif not link and entry.is_dir(follow_symlinks=False):
                    reason = GIT_METADATA if entry.name == ".git" else _ignore_reason(frames, child, True)
                    if reason:
                        counts[reason] += 1
                    else:
                        queue.append((child, self._enter(frames, root, child)))
                else:
                    reason = self._rules_reason(root, child, entry.path, frames, is_dir=False)
                    if reason:
                        counts[reason] += 1
                    else:
                        yield _posix(entry.path), child

    def _rewalk(self, root: str, start: tuple[str, ...]) -> None:
        """Index root/start's subtree again (its ignore rules changed, or it appeared)."""
        found: dict[str, tuple[tuple[str, ...], _Read]] = {}
        for key, parts in self._walk(root, start, Counter(), lambda: False):
            read = self._read(key, follow=os.path.islink(key))
            if read.text is not None:
                found[key] = (parts, read)
        prefix = _posix(os.path.join(root, *start)).rstrip("/") + "/"
        with self._lock:
            for key in [key for key in self._files if key.startswith(prefix) and key not in found]:
                self._drop(key)
            for key, (parts, read) in found.items():
                self._add(key, root, parts, read)

    # -- the rules --------------------------------------------------------------------------

    def _lexical(self, path: str | Path) -> str | None:
        """`path` made absolute and moved onto its resolved root, or None outside every root
        (as given or resolved). Touches no file."""
        absolute = os.path.abspath(os.fspath(path))
        for given, real in self._aliases:
            for base in (real, given):
                if _inside(absolute, base):
                    return real + absolute[len(base):]
        return None

    def _root_of(self, real: str) -> str | None:
        """The walked root holding the resolved path `real`."""
        return next((root for root in self._roots if _inside(real, root)), None)

    def _locate(self, path: str | Path) -> tuple[str, str, tuple[str, ...]] | str:
        """(key, root, parts under the root) of a path, its folders resolved; or the reason it is
        outside the workspace."""
        mapped = self._lexical(path)
        if mapped is None:
            return OUTSIDE
        if mapped in self._roots:
            return _posix(mapped), mapped, ()
        folder = os.path.realpath(os.path.dirname(mapped))
        root = self._root_of(folder)
        if root is None:
            return LEAVES
        key = os.path.join(folder, os.path.basename(mapped))
        return _posix(key), root, Path(os.path.relpath(key, root)).parts

    def _frames_to(self, root: str, parts: tuple[str, ...]) -> tuple[tuple[Frame, ...], str | None]:
        """The ignore rules in force inside root/parts (that folder's own included), or the
        reason that folder, or one above it, is refused."""
        frames = self._enter((), root, ())
        for depth in range(1, len(parts) + 1):
            folder = parts[:depth]
            reason = GIT_METADATA if folder[-1] == ".git" else _ignore_reason(frames, folder, True)
            if reason:
                return frames, reason
            frames = self._enter(frames, root, folder)
        return frames, None

    def _enter(self, frames: tuple[Frame, ...], root: str, parts: tuple[str, ...]) -> tuple[Frame, ...]:
        specs = self._folder_rules(os.path.join(root, *parts))
        return frames + ((parts, specs),) if specs else frames

    def _folder_rules(self, folder: str) -> tuple[tuple[str, pathspec.GitIgnoreSpec], ...]:
        """The ignore files of one folder as specs, highest precedence first; re-read when one
        of them changes (its stat)."""
        paths = [(name, os.path.join(folder, name)) for name in IGNORE_FILES]
        paths.append(("/".join(GIT_EXCLUDE), os.path.join(folder, *GIT_EXCLUDE)))
        stamps = tuple(_stamp(path) for _, path in paths)
        cached = self._rules.get(folder)
        if cached is not None and cached[0] == stamps:
            return cached[1]
        specs = []
        for (source, path), stamp in zip(paths, stamps):
            lines = self._ignore_lines(path) if stamp else None
            if lines:
                specs.append((source, pathspec.GitIgnoreSpec.from_lines(lines)))
        self._rules[folder] = (stamps, tuple(specs))
        return tuple(specs)

    def _ignore_lines(self, path: str) -> list[str] | None:
        if self._root_of(os.path.realpath(path)) is None:
            log.info("workspace index: not reading %s: it leads outside the workspace", path)
            return None
        try:
            with open(path, "rb") as file:
                data = file.read(MAX_IGNORE_FILE_BYTES)
        except OSError as exc:
            log.info("workspace index: cannot read %s: %s", path, exc)
            return None
        return data.decode("utf-8", errors="replace").splitlines()

    def _rules_reason(self, root: str, parts: tuple[str, ...], path: str, frames: tuple[Frame, ...] | None = None,
                      is_dir: bool | None = None, target: bool = False) -> str | None:
        """Why the rules that need no reading refuse root/parts (`path` on disk), or None:
        .git, the ignore files (`frames`, found when not given), secrets, a link's target
        (`target`: this is one, resolved already; a link loop resolves to a link)."""
        if not parts:
            return NOT_REGULAR
        if ".git" in parts:
            return GIT_METADATA
        if frames is None:
            frames, reason = self._frames_to(root, parts[:-1])
            if reason:
                return reason
        link = os.path.islink(path)
        if is_dir is None:
            is_dir = not link and os.path.isdir(path)
        reason = _ignore_reason(frames, parts, is_dir)
        if reason:
            return reason
        if is_secret(parts[-1]):
            return SECRET
        if link and not target:
            real = os.path.realpath(path)
            real_root = self._root_of(real)
            if real_root is None:
                return LEAVES
            return self._rules_reason(real_root, Path(os.path.relpath(real, real_root)).parts, real, target=True)
        return None

    def _admit(self, key: str, root: str, parts: tuple[str, ...]) -> _Read:
        """Every rule for one file: those on its path, then the reading."""
        reason = self._rules_reason(root, parts, key)
        return _Read(reason) if reason else self._read(key, follow=os.path.islink(key))

    def _read(self, key: str, follow: bool) -> _Read:
        """The file's text and stamp, or why not: not a regular file, too large, binary, not
        UTF-8, unreadable (logged), gone. Only a link the rules already checked is followed."""
        try:
            st = os.stat(key) if follow else os.lstat(key)
        except FileNotFoundError:
            return _Read(BROKEN_LINK if follow and os.path.lexists(key) else GONE)
        except OSError as exc:
            log.info("workspace index: cannot read %s: %s", key, exc)
            return _Read(BROKEN_LINK if follow else UNREADABLE)
        if not stat.S_ISREG(st.st_mode):
            return _Read(NOT_REGULAR)
        if st.st_size > self.max_file_bytes:
            return _Read(TOO_LARGE)
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
        if not follow:
            flags |= getattr(os, "O_NOFOLLOW", 0)
        try:
            with open(os.open(key, flags), "rb") as file:
                st = os.fstat(file.fileno())
                if not stat.S_ISREG(st.st_mode):
                    return _Read(NOT_REGULAR)
                data = file.read(self.max_file_bytes + 1)
        except FileNotFoundError:
            return _Read(GONE)
        except OSError as exc:
            log.info("workspace index: cannot read %s: %s", key, exc)
            return _Read(UNREADABLE)
        if len(data) > self.max_file_bytes:
            return _Read(TOO_LARGE)
        if b"\0" in data[:BINARY_SNIFF_BYTES]:
            return _Read(BINARY)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return _Read(NOT_UTF8)
        return _Read("", text, (st.st_mtime_ns, st.st_size))

    # -- the index and the cache (under self._lock) -----------------------------------------

    def _add(self, key: str, root: str, parts: tuple[str, ...], read: _Read) -> None:
        if key not in self._files and len(self._files) >= self.max_files:
            self._skipped[OVER_LIMIT] = self._skipped.get(OVER_LIMIT, 0) + 1
            return
        if key not in self._files:
            self._sorted = None
        self._files[key] = _Entry(root, "/".join(parts), *read.stamp)
        self._remember(key, read)

    def _drop(self, key: str) -> None:
        if self._files.pop(key, None) is not None:
            self._sorted = None
        self._forget(key)

    def _drop_tree(self, key: str) -> None:
        """Drop a file, or a folder's files."""
        with self._lock:
            self._drop(key)
            prefix = key.rstrip("/") + "/"
            for other in [k for k in self._files if k.startswith(prefix)]:
                self._drop(other)

    def _remember(self, key: str, read: _Read) -> None:
        self._forget(key)
        size = read.stamp[1]
        if size > self.max_total_bytes:
            return
        self._cache[key] = _Cached(read.stamp, read.text, size)
        self._cached_bytes += size
        while self._cached_bytes > self.max_total_bytes:
            _, evicted = self._cache.popitem(last=False)
            self._cached_bytes -= evicted.size

    def _forget(self, key: str) -> None:
        cached = self._cache.pop(key, None)
        if cached is not None:
            self._cached_bytes -= cached.size
