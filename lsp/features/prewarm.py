"""Pre-warm a document's K/V before the first keystroke: textDocument/didOpen and didSave.

Editor-neutral. The engine keeps each document's prompt tokens cached and reuses the
longest common prefix, and every completion prompt starts with the document's text up
to the cursor. Prefilling the document's head therefore pays for the first completion
anywhere below it, while the user is still reading.
"""

from __future__ import annotations

import logging

from loopcoder.engine.engine import CancelCheck, Engine, Usage

from .completion import CompletionOptions, build_prompt

log = logging.getLogger(__name__)

# Tokens of source code average 3-4 characters; 16 bounds even whitespace-heavy text,
# so the slice below never cuts what would fit, and a 5 MB file is not tokenized whole.
MAX_CHARS_PER_TOKEN = 16


def prewarm(engine: Engine, key: str, text: str, max_new_tokens: int, cancelled: CancelCheck) -> Usage | None:
    """Prefill the prompt a completion at the end of `text` would use, cut to fit the model; None when cancelled."""
    limit = engine.model_config.max_position_embeddings - max_new_tokens
    if limit < 1:
        return None
    head = text[: limit * MAX_CHARS_PER_TOKEN]
    ids = build_prompt(engine, head, "", CompletionOptions(max_new_tokens=max_new_tokens))[:limit]
    if cancelled():
        return None
    usage = engine.prefill(key, ids, cancelled)
    log.debug("pre-warmed %s: %d tokens, %d cached", key, usage.prompt_tokens, usage.cached_tokens)
    return None if cancelled() else usage
