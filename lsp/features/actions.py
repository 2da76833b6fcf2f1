"""Code actions on a selection or a whole file: explain, and edit by instruction, and the
chat-turn plumbing every action shares (the review is `review`; the hint, with its
no-code policy, is `hints`; the CI review of a diff is `ci_review`).

Editor-neutral (no pygls): the LSP server, the notebook extension and the CLI call these.
Each action is one chat turn with the model. Edit answers in JSON under a schema (the
engine masks every token the schema forbids), so its output always parses; explain
answers in markdown.

The code goes into the prompt as plain text, encoded apart from the chat template's
markup, so a file that contains "<|im_start|>" cannot inject a turn. Each action keeps
its own engine session per document (`uri#review`, ...), so asking again about an
unchanged file reuses the K/V, and the document's completion session stays warm.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Callable

from loopcoder.engine.api import CancelCheck, EngineAPI, GenerationResult, Priority
from loopcoder.engine.errors import InvalidRequestError, TokenizerError
from loopcoder.engine.sampling import SamplingParams

EDIT_EXTRA_CHARS = 400  # an edit may add this much beyond twice the selection
_CODE = "\x00loopcoder-code\x00"  # stands for the code while the chat template renders

Progress = Callable[[int], None]  # tokens generated so far


@dataclass(frozen=True)
class ActionOptions:
    max_new_tokens: int = 512
    context_tokens: int = 6144  # the code of one request may be at most this long
    temperature: float = 0.0


@dataclass(frozen=True)
class Span:
    """Whole lines `first..last` (0-based, inclusive) of a document."""

    first: int
    last: int


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


def chat_ids(engine: EngineAPI, system: str, before: str, code: str, after: str = "",
             examples: tuple[tuple[str, str], ...] = ()) -> list[int]:
    """Prompt ids of a system turn, example exchanges, and a user turn `before + code + after`,
    ready for the answer.

    The template's markup and our instructions may hold special tokens; `code` is the
    user's text and is encoded as plain text.
    """
    tokenizer = engine.tokenizer
    if tokenizer is None:
        raise TokenizerError("this model has no tokenizer: code actions need one")
    messages = [{"role": "system", "content": system}]
    for question, answer in examples:
        messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    messages.append({"role": "user", "content": before + _CODE + after})
    try:
        rendered = tokenizer.apply_chat_template(messages)
    except TokenizerError:  # a base model: a plain instruction layout
        shots = "".join(f"{q}\n\nAnswer:\n{a}\n\n" for q, a in examples)
        rendered = f"{system}\n\n{shots}{before}{_CODE}{after}\n\nAnswer:\n"
    head, sep, tail = rendered.partition(_CODE)
    if not sep or _CODE in tail:
        raise TokenizerError("the chat template does not show the user's message verbatim")
    bos_rendered = bool(tokenizer.bos_token) and head.startswith(tokenizer.bos_token)
    return (tokenizer.encode(head, add_special_tokens=not bos_rendered)
            + tokenizer.encode(code, parse_special=False)
            + tokenizer.encode(tail))


def numbered(lines: list[str], first: int) -> str:
    """`lines` with 1-based line numbers in a fixed-width gutter, starting at line `first` (0-based)."""
    width = len(str(first + len(lines)))
    return "\n".join(f"{first + i + 1:>{width}} | {line}" for i, line in enumerate(lines))


def lines_of(text: str) -> list[str]:
    """The lines of `text` as every action numbers them (an empty text has one empty line)."""
    return text.splitlines() or [""]


def checked_span(lines: list[str], span: Span | None) -> Span:
    """`span`, checked to lie in `lines`; the whole of them for None."""
    if span is None:
        return Span(0, len(lines) - 1)
    if not 0 <= span.first <= span.last < len(lines):
        raise InvalidRequestError(f"lines {span.first}..{span.last} are outside the document (0..{len(lines) - 1})")
    return span


def fit_prompt(engine: EngineAPI, ids: list[int], options: ActionOptions, what: str) -> list[int]:
    """`ids`, when the prompt leaves room for the answer; else an error that says to select less."""
    limit = min(options.context_tokens + 1024, engine.model_config.max_position_embeddings - options.max_new_tokens)
    if len(ids) > limit:
        raise InvalidRequestError(
            f"{what} needs {len(ids)} prompt tokens, more than the {limit} this model and contextTokens allow: "
            "select a smaller part of the file"
        )
    return ids


def _params(options: ActionOptions, schema: dict | None = None, max_new_tokens: int | None = None,
            seed: int | None = None) -> SamplingParams:
    return SamplingParams(max_new_tokens=max_new_tokens or options.max_new_tokens, temperature=options.temperature,
                          json_schema=schema, seed=seed)


def token_counter(progress: Progress | None):
    """An on_token callback reporting the count of tokens generated so far; None for no progress."""
    if progress is None:
        return None
    count = 0

    def on_token(token: int, text: str) -> None:
        nonlocal count
        if token >= 0:
            count += 1
            progress(count)

    return on_token


# -- explain -----------------------------------------------------------------------


def explain(engine: EngineAPI, key: str, text: str, span: Span | None = None, language: str = "",
            options: ActionOptions = ActionOptions(), cancelled: CancelCheck | None = None,
            progress: Progress | None = None) -> str:
    """A markdown explanation of lines `span` of `text`."""
    code, fence = _selected(text, span)
    ids = fit_prompt(engine, chat_ids(engine, EXPLAIN_SYSTEM, f"Explain this code:\n\n{fence}{language}\n", code, f"\n{fence}"),
                options, "this explanation")
    result = _chat(engine, f"{key}#explain", ids, options, cancelled, progress)
    return drop_repeat_paragraphs(result.text.strip())


def drop_repeat_paragraphs(markdown: str) -> str:
    """`markdown` without paragraphs or lines that repeat an earlier one word for word."""
    seen: set[str] = set()
    kept: list[str] = []
    for line in markdown.split("\n"):
        normal = " ".join(line.split()).lower()
        if len(normal) > 20 and normal in seen:  # short lines (fences, "```", bullets) may repeat
            continue
        seen.add(normal)
        kept.append(line)
    return re.sub(r"\n{3,}", "\n\n", "\n".join(kept)).strip()


def _chat(engine: EngineAPI, key: str, ids: list[int], options: ActionOptions, cancelled: CancelCheck | None,
          progress: Progress | None, max_new_tokens: int | None = None, seed: int | None = None,
          stop: tuple[str, ...] = ()) -> GenerationResult:
    tokens = min(options.max_new_tokens, max_new_tokens or options.max_new_tokens)
    params = replace(_params(options, max_new_tokens=tokens, seed=seed), stop=stop)
    return engine.generate_for(key, ids, params, on_token=token_counter(progress), cancelled=cancelled,
                               priority=Priority.ACTION)


def _selected(text: str, span: Span | None) -> tuple[str, str]:
    """The code of lines `span` of `text`, and a markdown fence to quote it with."""
    lines = lines_of(text)
    span = checked_span(lines, span)
    code = "\n".join(lines[span.first : span.last + 1])
    return code, _fence(code)


def _fence(code: str) -> str:
    """A markdown fence longer than any backtick run in `code`."""
    longest = max((len(run) for run in re.findall(r"`+", code)), default=0)
    return "`" * max(3, longest + 1)


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
    fence = _fence(code)
    before = f"Instruction: {instruction.strip()}\n\nCode:\n{fence}{language}\n"
    ids = fit_prompt(engine, chat_ids(engine, EDIT_SYSTEM, before, code, f"\n{fence}"), options, "this edit")
    # The rewrite may be twice the selection plus a little; the schema bounds it in characters,
    # and the token budget covers even one token a character, so the answer always completes.
    room = engine.model_config.max_position_embeddings - len(ids) - 16
    max_chars = min(2 * len(code) + EDIT_EXTRA_CHARS, room)
    if max_chars < len(code):
        raise InvalidRequestError(f"the selection is too long to rewrite with this model ({len(code)} characters): select less")
    schema = {**EDIT_SCHEMA, "properties": {"code": {"type": "string", "maxLength": max_chars}}}
    value, _ = engine.generate_json(f"{key}#edit", ids, schema, _params(options, max_new_tokens=max_chars + 16),
                                    cancelled=cancelled, on_token=token_counter(progress), priority=Priority.ACTION)
    rewritten = value["code"]
    # Keep the selection's own trailing newline: models drop it, and the next line would join this one.
    if code.endswith("\n") and not rewritten.endswith("\n"):
        rewritten += "\n"
    return rewritten
