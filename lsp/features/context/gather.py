"""What of the repository a completion sees: candidates from three sources, ranked, cut to a token
budget, and kept stable between keystrokes (docs/context.md, "Sources and ranking").

Sources, for the document being completed:

1. definitions of the names used near the cursor (symbols.names_near), found in the other
   files of the workspace (symbols.SymbolTable): their signatures and docstrings, never their
   bodies. The closer the name to the cursor, the higher the score; a definition in a file the
   document imports scores higher than a namesake elsewhere.
2. the files the document imports that live in the workspace: their top-level signatures.
3. chunks the user recently edited or viewed in other files (RecentChunks), newest first.

Stability: a keystroke that brings no new name keeps the context as it was, byte for byte,
so the prompt's start, and its warm K/V, stay put. A new candidate is appended at the end
(the pages before it stay valid); when the budget is full, the lowest-scored snippets that
the latest ranking no longer wants make room. The order within the prompt is the order in
which snippets joined.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .repo_prompt import ContextFile, RepoContext
from .symbols import Symbol, SymbolTable, extract_symbols, imports_of, language_of, names_near, resolve_import
from .workspace import WorkspaceIndex

DEFINITION, IMPORT, RECENT = "definition", "import", "recent"
IMPORTED_BONUS = 0.5
MAX_IMPORT_OUTLINE_LINES = 60


@dataclass(frozen=True)
class Candidate:
    key: str  # what makes two candidates the same snippet: "definition:/abs/a.py:12"
    path: str  # the file's absolute path
    text: str
    score: float
    source: str  # DEFINITION, IMPORT or RECENT


# -- recently edited and viewed chunks ------------------------------------------------------

@dataclass
class _Chunk:
    path: str
    start: int  # first line
    lines: list[str]
    seen: float


class RecentChunks:
    """A ring buffer of chunks of the files the user edited or viewed, as llama.vscode keeps one:
    `chunk_lines` lines around the place, a chunk mostly covered by a newer one of the same file
    replaced, at most `max_chunks`, none older than `max_age` seconds."""

    def __init__(self, max_chunks: int = 16, chunk_lines: int = 32, max_age: float = 600.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_chunks, self.chunk_lines, self.max_age, self.clock = max_chunks, chunk_lines, max_age, clock
        self._chunks: list[_Chunk] = []

    def note(self, path: str, text: str, line: int) -> None:
        """The user edited or looked at `line` (0-based) of `path`, whose text is `text`."""
        lines = text.split("\n")
        start = max(0, min(line - self.chunk_lines // 2, len(lines) - self.chunk_lines))
        chunk = _Chunk(path, start, lines[start:start + self.chunk_lines], self.clock())
        if not any(s.strip() for s in chunk.lines):
            return
        self._chunks = [c for c in self._chunks if not (c.path == path and _overlap(c, chunk) > 0.5)]
        self._chunks.append(chunk)
        del self._chunks[:-self.max_chunks]

    def forget(self, path: str) -> None:
        self._chunks = [c for c in self._chunks if c.path != path]

    def candidates(self, exclude: str) -> list[Candidate]:
        now = self.clock()
        self._chunks = [c for c in self._chunks if now - c.seen <= self.max_age]
        fresh = [c for c in self._chunks if c.path != exclude]
        out = []
        for rank, c in enumerate(reversed(fresh)):  # newest first
            out.append(Candidate(f"{RECENT}:{c.path}:{c.start}", c.path, "\n".join(c.lines).strip("\n"),
                                 0.25 / (1 + rank), RECENT))
        return out

    def __len__(self) -> int:
        return len(self._chunks)


def _overlap(a: _Chunk, b: _Chunk) -> float:
    shared = min(a.start + len(a.lines), b.start + len(b.lines)) - max(a.start, b.start)
    return max(0, shared) / max(1, min(len(a.lines), len(b.lines)))


# -- candidates from the workspace ----------------------------------------------------------

def candidates(path: str, text: str, offset: int, index: WorkspaceIndex, table: SymbolTable,
               recent: RecentChunks | None = None) -> list[Candidate]:
    """Every candidate snippet for a completion at `offset` of `path` (absolute), best first."""
    files = index.files()
    imported = []
    for ref in imports_of(path, text):
        target = resolve_import(ref, path, files)
        if target is not None and target != path and target not in imported:
            imported.append(target)
    for target in imported:  # the imported files' symbols, parsed once per version
        source = index.text(target)
        if source is not None:
            table.symbols(target, source)
    found: dict[str, Candidate] = {}
    for rank, name in enumerate(names_near(path, text, offset)):
        for symbol in table.define(name):
            if symbol.path == path:
                continue
            score = 1.0 / (1 + rank) + (IMPORTED_BONUS if symbol.path in imported else 0.0)
            key = f"{DEFINITION}:{symbol.path}:{symbol.line}"
            if key not in found or found[key].score < score:
                found[key] = Candidate(key, symbol.path, _shown(symbol), score, DEFINITION)
    defined = {key for key in found}
    for number, target in enumerate(imported):
        source = index.text(target)
        outline = _outline(target, source, defined) if source is not None else ""
        if outline:
            key = f"{IMPORT}:{target}"
            found[key] = Candidate(key, target, outline, 0.4 / (1 + number), IMPORT)
    out = sorted(found.values(), key=lambda c: (-c.score, c.key))
    if recent is not None:
        out += recent.candidates(path)
    return out


def _shown(symbol: Symbol) -> str:
    """A symbol's text for the prompt: a Python method under its class's line, as it reads in the file."""
    if symbol.kind == "method" and "." in symbol.name and language_of(symbol.path) == "python":
        return f"class {symbol.name.split('.')[0]}:\n    ...\n{symbol.text}"
    return symbol.text


def _outline(path: str, text: str, skip: set[str]) -> str:
    """A module's top-level definitions (a class with its methods' signatures), one after the other,
    at most MAX_IMPORT_OUTLINE_LINES lines; those in `skip` (already definition candidates) left out."""
    lines: list[str] = []
    for symbol in extract_symbols(path, text):
        if len(lines) >= MAX_IMPORT_OUTLINE_LINES:
            break
        if symbol.kind == "method" or f"{DEFINITION}:{symbol.path}:{symbol.line}" in skip:
            continue
        lines += symbol.text.split("\n")
    return "\n".join(lines[:MAX_IMPORT_OUTLINE_LINES])


# -- the budget and a stable choice ---------------------------------------------------------

@dataclass
class ContextKeeper:
    """One document's chosen snippets, kept between keystrokes (see the module's docstring)."""

    budget: int  # tokens
    count: Callable[[str], int]  # a text's tokens
    chosen: list[Candidate] = field(default_factory=list)
    encoded: tuple[list[Candidate], object] | None = None  # (the chosen list, its ids): the provider's cache
    _tokens: OrderedDict = field(default_factory=OrderedDict)

    def _cost(self, c: Candidate) -> int:
        digest = hashlib.blake2b(f"{c.path}\n{c.text}".encode(), digest_size=12).digest()
        if digest not in self._tokens:
            self._tokens[digest] = self.count(f"{c.path}\n{c.text}\n") + 1
            if len(self._tokens) > 4096:
                self._tokens.popitem(last=False)
        return self._tokens[digest]

    def update(self, ranked: list[Candidate]) -> list[Candidate]:
        """The snippets to show after this ranking (best first): unchanged when it brings nothing new."""
        wanted: list[Candidate] = []
        room = self.budget
        for c in ranked:  # what the budget would hold, ranking alone deciding
            cost = self._cost(c)
            if cost <= room:
                wanted.append(c)
                room -= cost
        wanted_keys = {c.key for c in wanted}
        latest = {c.key: c for c in ranked}
        # A snippet whose text changed is dropped (and added again at the end if still wanted); one the
        # ranking no longer names stays until its room is needed.
        kept = [c for c in self.chosen if c.key not in latest or latest[c.key].text == c.text]
        missing = [c for c in wanted if c.key not in {k.key for k in kept}]
        if not missing and len(kept) == len(self.chosen):
            return self.chosen
        used = sum(self._cost(c) for c in kept)
        for c in missing:
            cost = self._cost(c)
            while used + cost > self.budget:
                unwanted = [k for k in kept if k.key not in wanted_keys]
                if not unwanted:
                    break
                victim = min(unwanted, key=lambda k: (k.score, k.key))
                kept.remove(victim)
                used -= self._cost(victim)
            if used + cost <= self.budget:
                kept.append(c)
                used += cost
        self.chosen = kept
        return self.chosen


def repo_context(index: WorkspaceIndex, path: str, chosen: list[Candidate]) -> RepoContext:
    """The chosen snippets as the prompt shows them, in the order they joined, paths relative to their
    root; snippets of one file that follow each other share its section. (Only neighbours: gathering a
    file's later snippet into its earlier section would change the prompt before the end, and the
    warm pages after that point with it.)"""
    current = index.relative(path) or Path(path).name
    roots = index.stats().get("roots") or []
    name = Path(roots[0]).name if roots else Path(path).parent.name
    sections: list[tuple[str, list[str]]] = []
    for c in chosen:
        if sections and sections[-1][0] == c.path:
            sections[-1][1].append(c.text)
        else:
            sections.append((c.path, [c.text]))
    return RepoContext(name, current, tuple(ContextFile(index.relative(p) or Path(p).name, "\n\n".join(texts))
                                            for p, texts in sections))
