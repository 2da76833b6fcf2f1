"""The suggestion at a cursor: textDocument/inlineCompletion, and its textDocument/completion fallback.

Editor-neutral (no pygls). An automatic trigger (the user is typing) gets one line, so
ghost text never jumps ahead of the typist by a block; an explicit trigger gets a
multi-line block. "Nothing worth showing" and "a newer request took over" are both None.
"""

from __future__ import annotations

from loopcoder.engine.engine import CancelCheck, Engine

from .completion import CompletionOptions, complete
from .settings import ServerSettings


def suggest(engine: Engine, key: str, text: str, offset: int, settings: ServerSettings, *,
            multiline: bool, cancelled: CancelCheck) -> str | None:
    """The text to insert at `offset` of document `key`, or None."""
    options = CompletionOptions(max_new_tokens=settings.max_tokens, suffix_tokens=settings.suffix_tokens,
                                prefix_tokens=settings.context_tokens, multiline=multiline,
                                temperature=settings.temperature)
    if not settings.cache:
        engine.close(key)  # caching off: this prompt is computed from scratch, like a stateless server would
    completion = complete(engine, key, text, offset, options, cancelled)
    # A cancelled generation stopped mid-thought: its partial text would mislead.
    if cancelled() or not completion.text:
        return None
    return completion.text
