"""Pre-warm a document's K/V before the first keystroke: textDocument/didOpen and didSave.

Editor-neutral. The engine keeps each document's prompt tokens cached and reuses the
longest common prefix, and every completion prompt starts with the document's text up
to the cursor. Prefilling the document's head therefore pays for the first completion
anywhere in its first `contextTokens` tokens (prompts there are not cut), while the user
is still reading.
"""

from __future__ import annotations

import logging

from loopcoder.engine.api import CancelCheck, EngineAPI, Usage

from .completion import CompletionOptions, prompt_head

log = logging.getLogger(__name__)

def prewarm(engine: EngineAPI, key: str, text: str, options: CompletionOptions, cancelled: CancelCheck) -> Usage | None:
    """Prefill the head of `text` that a completion anywhere in it shares, as `options` cut
    prompts (none is cut before the first `prefix_budget` tokens); None when cancelled."""
    ids = prompt_head(engine, text, options)
    if cancelled():
        return None
    usage = engine.prefill(key, ids, cancelled)
    log.debug("pre-warmed %s: %d tokens, %d cached", key, usage.prompt_tokens, usage.cached_tokens)
    return None if cancelled() else usage
