"""Explain an error: what a traceback says went wrong in the code, and how to fix it.

Editor-neutral. The notebook extension calls it with a cell's code and the traceback of
its error output; a terminal could call it with a script and the traceback it printed.
Tracebacks from Jupyter kernels carry ANSI colour codes: they are stripped first. Long
tracebacks keep their end, where the exception is named.
"""

from __future__ import annotations

import re

from loopcoder.engine.api import CancelCheck, EngineAPI
from loopcoder.engine.errors import InvalidRequestError

from .prompts import ActionOptions, Progress, chat_ids, fence_for, fit_prompt, run_chat
from .prose import drop_repeat_paragraphs

EXPLAIN_ERROR_SYSTEM = (
    "You are a patient senior engineer. The user's code raised an error. In concise markdown, say in one "
    "sentence what went wrong and why, pointing at the line that caused it, then give the fix as a short "
    "bullet list."
)
MAX_TRACEBACK_CHARS = 4000  # the end of a traceback names the error; the frames above it repeat library code
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def plain_traceback(traceback: str) -> str:
    """`traceback` without ANSI escapes, cut to its last MAX_TRACEBACK_CHARS characters at a line start."""
    text = _ANSI.sub("", traceback).strip()
    if len(text) <= MAX_TRACEBACK_CHARS:
        return text
    tail = text[-MAX_TRACEBACK_CHARS:]
    return "...\n" + tail.split("\n", 1)[-1]


def explain_error(engine: EngineAPI, key: str, code: str, traceback: str, language: str = "",
                  options: ActionOptions = ActionOptions(), cancelled: CancelCheck | None = None,
                  progress: Progress | None = None) -> str:
    """A markdown explanation of the error `traceback` that running `code` raised."""
    error = plain_traceback(traceback)
    if not error:
        raise InvalidRequestError("there is no error to explain: the traceback is empty")
    fence = fence_for(code + error)
    # The code and the traceback are both the user's text: one plain-encoded slot carries both.
    material = f"{fence}{language}\n{code}\n{fence}\n\nThe error:\n{fence}\n{error}\n{fence}"
    ids = fit_prompt(engine, chat_ids(engine, EXPLAIN_ERROR_SYSTEM, "My code:\n", material,
                                 "\n\nWhy does it fail, and how do I fix it?"), options, "this explanation")
    result = run_chat(engine, f"{key}#explain-error", ids, options, cancelled, progress)
    return drop_repeat_paragraphs(result.text.strip())
