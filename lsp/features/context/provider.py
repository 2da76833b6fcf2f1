"""One workspace's repository context: the index, the symbols of its files, the recent chunks and
each document's kept choice, behind the few calls the CLI, the LSP server and Jupyter make.

    provider = RepoContextProvider([root], budget_tokens=1024)
    provider.build()                                     # a worker thread: index, then symbols
    ids = provider.context_ids(tokenizer, path, text, offset)   # per completion, milliseconds
    complete(engine, key, text, offset, options, context=ids)

Completions asked while the index builds use what is ready (nothing, then the imported files
as they are read). Everything here is bounded: the index's files and cached bytes, the symbol
table's files, the recent chunks, the documents kept.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Sequence

from loopcoder.engine.tokenizer import Tokenizer

from .gather import ContextKeeper, RecentChunks, candidates, repo_context
from .repo_prompt import ContextIds, context_ids, repo_format
from .symbols import SymbolTable, language_of
from .workspace import WorkspaceIndex

log = logging.getLogger(__name__)
DEFAULT_BUDGET_TOKENS = 1024
MAX_DOCUMENTS = 64


class RepoContextProvider:
    def __init__(self, roots: Sequence[Path | str], budget_tokens: int = DEFAULT_BUDGET_TOKENS,
                 fmt: str | None = None, index: WorkspaceIndex | None = None) -> None:
        if budget_tokens < 0:
            raise ValueError(f"repoContextTokens must be 0 (off) or more, not {budget_tokens}")
        self.index = index or WorkspaceIndex(roots)
        self.table = SymbolTable()
        self.recent = RecentChunks()
        self.budget_tokens = budget_tokens
        self.fmt = fmt
        self._keepers: OrderedDict[str, ContextKeeper] = OrderedDict()
        self._lock = threading.Lock()
        self.symbols_seconds: float | None = None

    # -- building and following the workspace --------------------------------------------

    def build(self, progress: Callable[[int, int], None] | None = None,
              cancelled: Callable[[], bool] | None = None) -> None:
        """Index the workspace, then parse every indexed file that has a grammar (call from a worker)."""
        self.index.build(progress=progress, cancelled=cancelled)
        started = time.perf_counter()
        for path in self.index.files():
            if cancelled is not None and cancelled():
                return
            if language_of(path) is None:
                continue
            text = self.index.text(path)
            if text is not None:
                with self._lock:
                    self.table.symbols(path, text)
        self.symbols_seconds = time.perf_counter() - started

    def file_changed(self, path: str | Path) -> None:
        """A workspace file was created, changed or saved on disk."""
        self.index.update(path)
        key = self.index.key(path)
        if key is None:
            return
        text = self.index.text(key)
        with self._lock:
            self.table.forget(key)
            if text is not None and language_of(key) is not None:
                self.table.symbols(key, text)

    def file_deleted(self, path: str | Path) -> None:
        key = self.index.key(path)
        self.index.remove(path)
        if key is None:
            return
        with self._lock:
            self.table.forget(key)
            self.recent.forget(key)

    def document_edited(self, path: str | Path, text: str, line: int) -> None:
        """An open document changed at `line` (0-based): a recent chunk, and its definitions follow."""
        key = self.index.key(path)
        if key is None:
            return  # outside the workspace: nothing of it goes into another file's prompt
        with self._lock:
            self.recent.note(key, text, line)
            if language_of(key) is not None:
                self.table.symbols(key, text)  # definitions the user is writing, seen from other files

    def set_budget(self, budget_tokens: int) -> None:
        """A new repoContextTokens: every document's choice starts again."""
        with self._lock:
            self.budget_tokens = budget_tokens
            self._keepers.clear()

    def document_closed(self, path: str | Path) -> None:
        with self._lock:
            self._keepers.pop(self.index.key(path) or "", None)

    # -- per completion ---------------------------------------------------------------

    def context_ids(self, tokenizer: Tokenizer, path: str | Path, text: str, offset: int) -> ContextIds | None:
        """The ids of this completion's repository context, or None when there is none (off, nothing found,
        a document outside the workspace)."""
        if self.budget_tokens == 0:
            return None
        key = self.index.key(path)
        if key is None:
            return None
        with self._lock:
            ranked = candidates(key, text, offset, self.index, self.table, self.recent)
            keeper = self._keepers.pop(key, None) or ContextKeeper(
                self.budget_tokens, lambda t: len(tokenizer.encode(t, parse_special=False)))
            self._keepers[key] = keeper
            while len(self._keepers) > MAX_DOCUMENTS:
                self._keepers.popitem(last=False)
            chosen = keeper.update(ranked)
            if not chosen:
                return None
            if keeper.encoded is not None and keeper.encoded[0] is chosen:  # unchanged: the same ids, not re-encoded
                return keeper.encoded[1]
            ids = context_ids(tokenizer, repo_context(self.index, key, chosen), repo_format(tokenizer, self.fmt))
            keeper.encoded = (chosen, ids)
            return ids

    def chosen(self, path: str | Path) -> list:
        """The snippets the last completion of `path` was given."""
        with self._lock:
            keeper = self._keepers.get(self.index.key(path) or "")
            return list(keeper.chosen) if keeper is not None else []

    def stats(self) -> dict:
        with self._lock:
            return {**self.index.stats(), "symbols": self.table.stats(), "symbols_seconds": self.symbols_seconds,
                    "recent_chunks": len(self.recent), "documents": len(self._keepers),
                    "budget_tokens": self.budget_tokens}
