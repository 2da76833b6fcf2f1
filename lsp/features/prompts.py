"""The prompt library every chat action shares: the options of an action, its chat prompt,
numbered lines, a selection and the fence that quotes it, fitting a prompt to the context,
and the one chat turn that runs it.

Editor-neutral (no pygls). The actions (`actions`), the hint (`hints`), the error
explanation (`tracebacks`), the editor's review (`review`), the model's answer in a review
(`findings_answer`) and the CI review (`ci_review`) build their prompts with these.

The code goes into the prompt as plain text, encoded apart from the chat template's
markup, so a file that contains "<|im_start|>" cannot inject a turn.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Callable

from loopcoder.engine.api import CancelCheck, EngineAPI, GenerationResult, Priority
from loopcoder.engine.errors import InvalidRequestError, TokenizerError
from loopcoder.engine.sampling import SamplingParams

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


# -- the prompt ---------------------------------------------------------------------------


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


def fit_prompt(engine: EngineAPI, ids: list[int], options: ActionOptions, what: str) -> list[int]:
    """`ids`, when the prompt leaves room for the answer; else an error that says to select less."""
    limit = min(options.context_tokens + 1024, engine.model_config.max_position_embeddings - options.max_new_tokens)
    if len(ids) > limit:
        raise InvalidRequestError(
            f"{what} needs {len(ids)} prompt tokens, more than the {limit} this model and contextTokens allow: "
            "select a smaller part of the file"
        )
    return ids


# -- the code in it -------------------------------------------------------------------------


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


def selected_code(text: str, span: Span | None) -> tuple[str, str]:
    """The code of lines `span` of `text`, and a markdown fence to quote it with."""
    lines = lines_of(text)
    span = checked_span(lines, span)
    code = "\n".join(lines[span.first : span.last + 1])
    return code, fence_for(code)


def fence_for(code: str) -> str:
    """A markdown fence longer than any backtick run in `code`."""
    longest = max((len(run) for run in re.findall(r"`+", code)), default=0)
    return "`" * max(3, longest + 1)


# -- the chat turn --------------------------------------------------------------------------


def action_params(options: ActionOptions, schema: dict | None = None, max_new_tokens: int | None = None,
                  seed: int | None = None) -> SamplingParams:
    """The sampling parameters of an action's answer."""
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


def run_chat(engine: EngineAPI, key: str, ids: list[int], options: ActionOptions, cancelled: CancelCheck | None,
             progress: Progress | None, max_new_tokens: int | None = None, seed: int | None = None,
             stop: tuple[str, ...] = ()) -> GenerationResult:
    """One chat turn in engine session `key`: the answer to prompt `ids`, at most `max_new_tokens` long."""
    tokens = min(options.max_new_tokens, max_new_tokens or options.max_new_tokens)
    params = replace(action_params(options, max_new_tokens=tokens, seed=seed), stop=stop)
    return engine.generate_for(key, ids, params, on_token=token_counter(progress), cancelled=cancelled,
                               priority=Priority.ACTION)
