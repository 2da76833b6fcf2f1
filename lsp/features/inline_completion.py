"""The suggestion at a cursor: textDocument/inlineCompletion, and its textDocument/completion fallback.

Editor-neutral (no pygls). An automatic trigger (the user is typing) gets one line, so
ghost text never jumps ahead of the typist by a block; an explicit trigger gets a
multi-line block. "Nothing worth showing" and "a newer request took over" are both None.

`TypedThrough` remembers the last suggestion per document: while the user types the
characters it suggested, the rest is served without running the model.
"""

from __future__ import annotations

from dataclasses import dataclass

from loopcoder.engine.api import CancelCheck, EngineAPI

from .completion import CompletionOptions, complete
from .context.repo_prompt import ContextIds
from .settings import ServerSettings


def completion_options(settings: ServerSettings, multiline: bool = True) -> CompletionOptions:
    return CompletionOptions(max_new_tokens=settings.max_tokens, suffix_tokens=settings.suffix_tokens,
                             prefix_tokens=settings.context_tokens, multiline=multiline,
                             temperature=settings.temperature)


def suggest(engine: EngineAPI, key: str, text: str, offset: int, settings: ServerSettings, *,
            multiline: bool, cancelled: CancelCheck, context: ContextIds | None = None) -> str | None:
    """The text to insert at `offset` of document `key`, or None; `context`: repository context."""
    options = completion_options(settings, multiline)
    if not settings.cache:
        engine.close(key, keep_cached=False)  # caching off: this prompt is computed from scratch, like a stateless server would
    completion = complete(engine, key, text, offset, options, cancelled, context=context)
    # A cancelled generation stopped mid-thought: its partial text would mislead.
    if cancelled() or not completion.text:
        return None
    return completion.text


@dataclass(frozen=True)
class _Shown:
    text: str  # the document when the suggestion was made (a reference: str is immutable)
    offset: int
    suggestion: str
    multiline: bool


class TypedThrough:
    """The last suggestion of each document, and what of it is left once the user typed some of it."""

    def __init__(self) -> None:
        self._shown: dict[str, _Shown] = {}

    def remember(self, key: str, text: str, offset: int, suggestion: str | None, multiline: bool) -> None:
        if suggestion:
            self._shown[key] = _Shown(text, offset, suggestion, multiline)
        else:
            self._shown.pop(key, None)

    def forget(self, key: str) -> None:
        self._shown.pop(key, None)

    def rest(self, key: str, text: str, offset: int, multiline: bool) -> str | None:
        """What remains of the last suggestion, when `text` is the old document with a start of it typed at
        the old cursor and `offset` just after; None otherwise (the model must run)."""
        shown = self._shown.get(key)
        if shown is None or (multiline and not shown.multiline):
            return None
        typed = offset - shown.offset
        if typed <= 0 or typed >= len(shown.suggestion) or len(text) != len(shown.text) + typed:
            return None
        if text[shown.offset : offset] != shown.suggestion[:typed]:
            return None
        # Everything else must be as it was: an edit elsewhere may change what fits here.
        if not (text.startswith(shown.text[: shown.offset]) and text.endswith(shown.text[shown.offset :])):
            return None
        rest = shown.suggestion[typed:]
        if not multiline:
            rest = rest.split("\n", 1)[0]
        return rest if rest.strip() else None
