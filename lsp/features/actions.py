"""Code actions on a selection or a whole file: review, explain, and edit by instruction
(the hint, with its no-code policy, is `hints`; the CI review of a diff is `ci_review`).

Editor-neutral (no pygls): the LSP server, the notebook extension and the CLI call these.
Each action is one chat turn with the model. Review and edit answer in JSON under a
schema (the engine masks every token the schema forbids), so their output always parses;
explain answers in markdown.

The code goes into the prompt as plain text, encoded apart from the chat template's
markup, so a file that contains "<|im_start|>" cannot inject a turn. Each action keeps
its own engine session per document (`uri#review`, ...), so asking again about an
unchanged file reuses the K/V, and the document's completion session stays warm.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from typing import Any, Callable

from loopcoder.engine.engine import CancelCheck, Engine, GenerationResult
from loopcoder.engine.errors import CancelledError, InvalidRequestError, TokenizerError
from loopcoder.engine.sampling import FinishReason, SamplingParams
from loopcoder.engine.scheduler import Priority

SEVERITIES = ("error", "warning", "info")
CATEGORIES = ("security", "bug", "performance", "style")
MAX_FINDINGS = 6
MAX_MESSAGE_CHARS = 200
MAX_REPLACEMENT_CHARS = 300
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


@dataclass(frozen=True)
class Finding:
    line: int  # 0-based
    start: int  # characters into the line: the code, without its indentation
    end: int
    severity: str
    category: str
    message: str
    replacement: str | None  # the whole corrected line(s), indented; None when there is no fix
    original: str  # the line as it was when reviewed: relocates the finding after edits

    def as_json(self) -> dict[str, Any]:
        return {"line": self.line, "start": self.start, "end": self.end, "severity": self.severity,
                "category": self.category, "message": self.message, "replacement": self.replacement}


# -- prompts ------------------------------------------------------------------------------

REVIEW_SYSTEM = (
    "You are a meticulous senior code reviewer. Report only real problems: security "
    "(SQL or shell commands built from user input, unsafe deserialization, secrets in code), "
    "bugs, performance, and style. For each problem give the line number as shown, a "
    "severity, a category, one sentence saying what is wrong and why, and, when one line can "
    "fix it, that corrected line as `replacement` (else null). For SQL injection the fix is a "
    "parameterized query. Report at most five problems, most severe first, each message one short "
    "sentence. Answer with JSON only."
)
# One worked exchange: it shows the answer's shape and length better than any instruction.
REVIEW_EXAMPLES = ((
    "Review this python code (line numbers on the left):\n\n"
    "1 | import os\n2 | \n3 | def list_dir(user_path):\n4 |     os.system(\"ls \" + user_path)\n5 |     return True",
    json.dumps({"findings": [
        {"line": 4, "severity": "error", "category": "security",
         "message": "The shell command is built from user input, which allows command injection.",
         "replacement": "subprocess.run([\"ls\", user_path], check=True)"},
        {"line": 5, "severity": "info", "category": "style",
         "message": "The function always returns True, so the result says nothing.", "replacement": None},
    ]}, separators=(", ", ": ")),
),)
EXPLAIN_SYSTEM = (
    "You are a patient senior engineer. Explain what the given code does, how it does it, and "
    "anything surprising in it, in concise markdown: a one-sentence summary, then short bullet points."
)
EDIT_SYSTEM = (
    "You are an expert programmer. Rewrite the given code to follow the instruction. Change only "
    "what the instruction asks, keep the indentation and style, and answer with JSON only: the "
    "complete rewritten code as `code`."
)


def finding_schema(first_line: int, last_line: int) -> dict[str, Any]:
    """The JSON schema a review answers in; line numbers are 1-based, as shown to the model."""
    return {
        "type": "object",
        "properties": {
            "findings": {
                "type": "array",
                "maxItems": MAX_FINDINGS,
                "items": {
                    "type": "object",
                    "properties": {
                        "line": {"type": "integer", "minimum": first_line, "maximum": last_line},
                        "severity": {"enum": list(SEVERITIES)},
                        "category": {"enum": list(CATEGORIES)},
                        "message": {"type": "string", "maxLength": MAX_MESSAGE_CHARS},
                        "replacement": {"type": ["string", "null"], "maxLength": MAX_REPLACEMENT_CHARS},
                    },
                    "required": ["line", "severity", "category", "message", "replacement"],
                    "additionalProperties": False,
                },
            }
        },
        "required": ["findings"],
        "additionalProperties": False,
    }


EDIT_SCHEMA = {
    "type": "object",
    "properties": {"code": {"type": "string"}},
    "required": ["code"],
    "additionalProperties": False,
}


def chat_ids(engine: Engine, system: str, before: str, code: str, after: str = "",
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


def _lines(text: str) -> list[str]:
    return text.splitlines() or [""]


def _check_span(lines: list[str], span: Span | None) -> Span:
    if span is None:
        return Span(0, len(lines) - 1)
    if not 0 <= span.first <= span.last < len(lines):
        raise InvalidRequestError(f"lines {span.first}..{span.last} are outside the document (0..{len(lines) - 1})")
    return span


def _fits(engine: Engine, ids: list[int], options: ActionOptions, what: str) -> list[int]:
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


# -- review -------------------------------------------------------------------------------


def review(engine: Engine, key: str, text: str, span: Span | None = None, language: str = "",
           options: ActionOptions = ActionOptions(), cancelled: CancelCheck | None = None,
           progress: Progress | None = None) -> "Review":
    """Findings about lines `span` of `text` (the whole text when None), most severe first."""
    lines = _lines(text)
    span = _check_span(lines, span)
    shown = numbered(lines[span.first : span.last + 1], span.first)
    what = f"{language} code" if language else "code"
    ids = _fits(engine, chat_ids(engine, REVIEW_SYSTEM, f"Review this {what} (line numbers on the left):\n\n", shown,
                                 examples=REVIEW_EXAMPLES), options, "this review")
    schema = finding_schema(span.first + 1, span.last + 1)
    value, complete = findings_answer(engine, f"{key}#review", ids, schema, options, cancelled, progress)
    return Review(findings_from(value, lines), complete)


def findings_answer(engine: Engine, key: str, ids: list[int], schema: dict, options: ActionOptions,
                    cancelled: CancelCheck | None = None, progress: Progress | None = None) -> tuple[dict, bool]:
    """The model's `{"findings": [...]}` answer under `schema`, and whether it was complete.

    Shared by the editor's review and the CI review (`ci_review`)."""
    result = engine.generate_for(key, ids, _params(options, schema), cancelled=cancelled,
                                 on_token=token_counter(progress), priority=Priority.ACTION)
    if result.finish_reason is FinishReason.CANCELLED:
        raise CancelledError(f"the review was cancelled after {len(result.token_ids)} tokens")
    complete = result.finish_reason is not FinishReason.LENGTH
    # Out of tokens mid-answer: the findings written out in full still count.
    return (json.loads(result.text) if complete else complete_findings(result.text)), complete


@dataclass(frozen=True)
class Review:
    findings: list[Finding]
    complete: bool  # False: the token budget ran out; `findings` are those the model finished


def complete_findings(text: str) -> dict:
    """The findings written out in full in a review answer cut short.

    The schema fixes the shape, `{"findings": [{...}, {...}, ...`, so the answer is cut
    after the last item closed at depth 2, and the list and object closed after it.
    """
    depth, in_string, escaped, last_item_end = 0, False, False, -1
    for i, ch in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
            if ch == "}" and depth == 2:
                last_item_end = i
    if last_item_end < 0:
        return {"findings": []}
    return json.loads(text[: last_item_end + 1] + "]}")


def findings_from(value: dict, lines: list[str]) -> list[Finding]:
    """Turn the model's (schema-valid) answer into findings on `lines`: deduplicated, fixes indented, no-op fixes dropped."""
    found: list[Finding] = []
    seen: set[tuple[int, str]] = set()
    for item in value["findings"]:
        line = item["line"] - 1
        message = " ".join(item["message"].split())
        if not message or (line, message) in seen:
            continue
        seen.add((line, message))
        original = lines[line]
        indent = original[: len(original) - len(original.lstrip())]
        start, end = len(indent), len(original.rstrip())
        if end <= start:  # a blank line: mark its start
            start = end = len(original)
        found.append(Finding(line, start, end, item["severity"], item["category"], message,
                             _fix(item["replacement"], original, indent), original))
    order = {s: i for i, s in enumerate(SEVERITIES)}
    return sorted(found, key=lambda f: (order[f.severity], f.line))


def _fix(replacement: str | None, original: str, indent: str) -> str | None:
    """The replacement for a whole line, indented like it; None for no fix or one that changes nothing."""
    if replacement is None or not replacement.strip():
        return None
    body = replacement.rstrip().split("\n")
    first = body[0].lstrip()
    # The model often drops the indentation: put the original's back.
    fixed = "\n".join([indent + first] + [line if line.startswith(indent) else indent + line.lstrip() for line in body[1:]])
    return None if fixed.rstrip() == original.rstrip() else fixed


def relocate(findings: list[Finding], text: str) -> list[Finding]:
    """The findings still valid in the edited `text`: each follows its line (nearest identical
    line to where it was); one whose line was changed or deleted is dropped."""
    lines = _lines(text)
    moved = []
    for f in findings:
        if f.line < len(lines) and lines[f.line] == f.original:
            moved.append(f)
            continue
        candidates = [i for i, line in enumerate(lines) if line == f.original]
        if candidates:
            best = min(candidates, key=lambda i: abs(i - f.line))
            moved.append(Finding(best, f.start, f.end, f.severity, f.category, f.message, f.replacement, f.original))
    return moved


# -- explain -----------------------------------------------------------------------


def explain(engine: Engine, key: str, text: str, span: Span | None = None, language: str = "",
            options: ActionOptions = ActionOptions(), cancelled: CancelCheck | None = None,
            progress: Progress | None = None) -> str:
    """A markdown explanation of lines `span` of `text`."""
    code, fence = _selected(text, span)
    ids = _fits(engine, chat_ids(engine, EXPLAIN_SYSTEM, f"Explain this code:\n\n{fence}{language}\n", code, f"\n{fence}"),
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


def _chat(engine: Engine, key: str, ids: list[int], options: ActionOptions, cancelled: CancelCheck | None,
          progress: Progress | None, max_new_tokens: int | None = None, seed: int | None = None,
          stop: tuple[str, ...] = ()) -> GenerationResult:
    tokens = min(options.max_new_tokens, max_new_tokens or options.max_new_tokens)
    params = replace(_params(options, max_new_tokens=tokens, seed=seed), stop=stop)
    return engine.generate_for(key, ids, params, on_token=token_counter(progress), cancelled=cancelled,
                               priority=Priority.ACTION)


def _selected(text: str, span: Span | None) -> tuple[str, str]:
    """The code of lines `span` of `text`, and a markdown fence to quote it with."""
    lines = _lines(text)
    span = _check_span(lines, span)
    code = "\n".join(lines[span.first : span.last + 1])
    return code, _fence(code)


def _fence(code: str) -> str:
    """A markdown fence longer than any backtick run in `code`."""
    longest = max((len(run) for run in re.findall(r"`+", code)), default=0)
    return "`" * max(3, longest + 1)


# -- edit ---------------------------------------------------------------------------------


def edit(engine: Engine, key: str, text: str, start: int, end: int, instruction: str, language: str = "",
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
    ids = _fits(engine, chat_ids(engine, EDIT_SYSTEM, before, code, f"\n{fence}"), options, "this edit")
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
