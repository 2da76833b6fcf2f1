"""Code actions on a selection or a whole file: explain, and edit by instruction (the
review is `review`; the hint, with its no-code policy, is `hints`; the CI review of a
diff is `ci_review`; the prompt plumbing they all share is `prompts`).

Editor-neutral (no pygls): the LSP server, the notebook extension and the CLI call these.
Each action is one chat turn with the model. Edit answers in JSON under a schema (the
engine masks every token the schema forbids), so its output always parses; explain
answers in markdown.

Each action keeps its own engine session per document (`uri#review`, ...), so asking
again about an unchanged file reuses the K/V, and the document's completion session
stays warm.
"""

from __future__ import annotations

from loopcoder.engine.api import CancelCheck, EngineAPI, Priority
from loopcoder.engine.errors import InvalidRequestError

from .prompts import (
    ActionOptions,
    Progress,
    Span,
    action_params,
    chat_ids,
    fence_for,
    fit_prompt,
    run_chat,
    selected_code,
    token_counter,
)
from .prose import drop_repeat_paragraphs

EDIT_EXTRA_CHARS = 400  # an edit may add this much beyond twice the selection

# -- prompts ------------------------------------------------------------------------------

EXPLAIN_SYSTEM = (
    "You are a patient senior engineer. Explain what the given code does, how it does it, and "
    "anything surprising in it, in concise markdown: a one-sentence summary, then short bullet points."
)
EDIT_SYSTEM = (
    "You are an expert programmer. Rewrite the given code to follow the instruction. Change only "
    "what the instruction asks, keep the indentation and style, and answer with JSON only: the "
    "complete rewritten code as `code`."
)


EDIT_SCHEMA = {
    "type": "object",
    "properties": {"code": {"type": "string"}},
    "required": ["code"],
    "additionalProperties": False,
}


# -- explain -----------------------------------------------------------------------


def explain(engine: EngineAPI, key: str, text: str, span: Span | None = None, language: str = "",
            options: ActionOptions = ActionOptions(), cancelled: CancelCheck | None = None,
            progress: Progress | None = None) -> str:
    """A markdown explanation of lines `span` of `text`."""
    code, fence = selected_code(text, span)
    ids = fit_prompt(engine, chat_ids(engine, EXPLAIN_SYSTEM, f"Explain this code:\n\n{fence}{language}\n", code, f"\n{fence}"),
                options, "this explanation")
    result = run_chat(engine, f"{key}#explain", ids, options, cancelled, progress)
    return drop_repeat_paragraphs(result.text.strip())


# -- edit ---------------------------------------------------------------------------------


def edit(engine: EngineAPI, key: str, text: str, start: int, end: int, instruction: str, language: str = "",
         options: ActionOptions = ActionOptions(), cancelled: CancelCheck | None = None,
         progress: Progress | None = None) -> str:
    """The text that replaces `text[start:end]` so that it follows `instruction`."""
    if not 0 <= start <= end <= len(text):
        raise InvalidRequestError(f"range {start}..{end} is outside the document (0..{len(text)})")
    if not isinstance(instruction, str) or not instruction.strip():
        raise InvalidRequestError("loopcoder.edit needs a non-empty instruction, e.g. \"add logging\"")
    code = text[start:end]
    fence = fence_for(code)
    before = f"Instruction: {instruction.strip()}\n\nCode:\n{fence}{language}\n"
    ids = fit_prompt(engine, chat_ids(engine, EDIT_SYSTEM, before, code, f"\n{fence}"), options, "this edit")
    # The rewrite may be twice the selection plus a little; the schema bounds it in characters,
    # and the token budget covers even one token a character, so the answer always completes.
    room = engine.model_config.max_position_embeddings - len(ids) - 16
    max_chars = min(2 * len(code) + EDIT_EXTRA_CHARS, room)
    if max_chars < len(code):
        raise InvalidRequestError(f"the selection is too long to rewrite with this model ({len(code)} characters): select less")
    schema = {**EDIT_SCHEMA, "properties": {"code": {"type": "string", "maxLength": max_chars}}}
    value, _ = engine.generate_json(f"{key}#edit", ids, schema, action_params(options, max_new_tokens=max_chars + 16),
                                    cancelled=cancelled, on_token=token_counter(progress), priority=Priority.ACTION)
    rewritten = value["code"]
    # Keep the selection's own trailing newline: models drop it, and the next line would join this one.
    if code.endswith("\n") and not rewritten.endswith("\n"):
        rewritten += "\n"
    return rewritten
