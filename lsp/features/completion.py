"""Completion at a cursor: the prompt, the stop rules and the clean-up of what comes back.

Editor-neutral (no pygls): the CLI calls it now, the LSP server and the notebook
extension will call it too.

The prompt keeps stable text first so the document's warm K/V is reused: the prefix up
to the cursor, then (only for models with FIM tokens) the suffix, bounded to
`suffix_tokens` tokens, so a keystroke costs O(typed + bounded suffix), not O(file).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from loopcoder.engine.api import CancelCheck, EngineAPI, GenerationResult
from loopcoder.engine.errors import InvalidRequestError, TokenizerError
from loopcoder.engine.sampling import DedentStop, FinishReason, SamplingParams
from loopcoder.engine.tokenizer import split_last_token

from .context.repo_prompt import ContextIds


SUFFIX_CHARS_PER_TOKEN = 16
# A long prefix is cut at a line start near a multiple of this many characters, so the
# prompt's start stays put while the user types and the warm K/V stays valid.
PREFIX_CUT_QUANTUM = 4096
# Code tokenizes at 3.5-4.5 characters a token; denser text is cut to the budget in tokens.
PREFIX_CHARS_PER_TOKEN = 4


@dataclass(frozen=True)
class CompletionOptions:
    max_new_tokens: int = 64
    suffix_tokens: int = 256
    prefix_tokens: int = 6144  # at most this much of the text before the cursor (and what the model fits)
    multiline: bool = True  # explicit triggers: a block; automatic ones: to the end of the line
    temperature: float = 0.0


@dataclass
class Completion:
    text: str  # what to insert at the cursor; "" means "nothing worth showing"
    prompt_tokens: int
    result: GenerationResult


def offset_of(text: str, line: int, column: int) -> int:
    """Character offset of a 1-based (line, column) cursor, as editors show it."""
    lines = text.split("\n")
    if not 1 <= line <= len(lines):
        raise InvalidRequestError(f"line {line} is outside the document (1..{len(lines)})")
    if not 1 <= column <= len(lines[line - 1]) + 1:
        raise InvalidRequestError(f"column {column} is outside line {line} (1..{len(lines[line - 1]) + 1})")
    return sum(len(x) + 1 for x in lines[: line - 1]) + column - 1


def prefix_budget(engine: EngineAPI, options: CompletionOptions) -> int:
    """Most tokens of text before the cursor a prompt holds."""
    return max(1, min(options.prefix_tokens,
                      engine.model_config.max_position_embeddings - options.max_new_tokens - options.suffix_tokens - 8))


def build_prompt(engine: EngineAPI, prefix: str, suffix: str, options: CompletionOptions,
                 context: ContextIds | None = None) -> list[int]:
    """The prompt's ids: repository `context` (repo_prompt.py) first when given, then the code
    before the cursor, then, for FIM models, the code after it."""
    tokenizer = engine.tokenizer
    if tokenizer is None:
        raise TokenizerError("this model has no tokenizer: text completion needs one")
    context = context or ContextIds([], [])
    budget = max(1, prefix_budget(engine, options) - len(context))
    prefix = bounded_prefix(prefix, budget * PREFIX_CHARS_PER_TOKEN)
    # Document text is plain text: a file that mentions "<|im_start|>" must not inject it.
    # add_special_tokens: a BOS where the model's tokenizer asks for one (Llama SPM), none otherwise.
    if tokenizer.fim_format is None:
        bos = tokenizer.encode("", add_special_tokens=True)
        ids = _drop_front(tokenizer.encode(prefix, parse_special=False), budget)  # text denser than the estimate
        ids = [*bos, *context.before, *context.lead, *ids]
    else:
        # Cut by characters first so a huge file is not tokenized on every keystroke; no
        # token is longer than SUFFIX_CHARS_PER_TOKEN characters in practice.
        head = suffix[: options.suffix_tokens * SUFFIX_CHARS_PER_TOKEN]
        suffix_ids = tokenizer.encode(head, parse_special=False)[: options.suffix_tokens]
        prefix_ids = _drop_front(tokenizer.encode(prefix, parse_special=False), budget)
        ids = tokenizer.fim_ids([*context.lead, *prefix_ids], suffix_ids, before=context.before)
    if not ids:  # an empty document with no BOS: start from a newline
        ids = tokenizer.encode("\n")
    return ids


def prompt_head(engine: EngineAPI, text: str, options: CompletionOptions) -> list[int]:
    """The ids that completion prompts at cursors in the head of `text` (its first
    `prefix_budget` tokens, where no prompt is cut) start with: what pre-warming prefills."""
    tokenizer = engine.tokenizer
    if tokenizer is None:
        raise TokenizerError("this model has no tokenizer: text completion needs one")
    budget = prefix_budget(engine, options)
    head = text[: budget * PREFIX_CHARS_PER_TOKEN]
    if tokenizer.fim_format is None:
        return tokenizer.encode(head, add_special_tokens=True, parse_special=False)[:budget] or tokenizer.encode("\n")
    # What follows the cursor differs between prompts: only the part before it is shared.
    return tokenizer.fim_head_ids(tokenizer.encode(head, parse_special=False)[:budget])


def _drop_front(ids: list[int], budget: int) -> list[int]:
    """Cut ids to at most `budget`, dropping from the front in steps of a quarter budget so
    the start moves only every few hundred typed tokens, not on each keystroke."""
    if len(ids) <= budget:
        return ids
    step = max(1, budget // 4)
    drop = -(-(len(ids) - budget) // step) * step  # round up to a whole step
    return ids[drop:]


def bounded_prefix(prefix: str, max_chars: int) -> str:
    """The end of `prefix`, at most `max_chars` long, starting at a stable line start.

    The cut moves only when the cursor crosses a PREFIX_CUT_QUANTUM boundary, not on
    every keystroke, so consecutive prompts share their start and their cached K/V.
    """
    if len(prefix) <= max_chars:
        return prefix
    excess = len(prefix) - max_chars
    start = (excess // PREFIX_CUT_QUANTUM + 1) * PREFIX_CUT_QUANTUM  # round up: stay within max_chars
    newline = prefix.find("\n", start)
    return prefix[newline + 1 :] if newline != -1 else prefix[start:]


def complete(engine: EngineAPI, key: str, text: str, offset: int, options: CompletionOptions = CompletionOptions(),
             cancelled: CancelCheck | None = None, on_text: Callable[[str], None] | None = None,
             context: ContextIds | None = None) -> Completion:
    """Complete document `key` (its full `text`) at character `offset`.

    `cancelled()` is polled by the engine between chunks and tokens; True stops it early
    (a newer request for the document, or the client's $/cancelRequest).
    `on_text(text)`: streaming; called after each generated token with what would be
    inserted if generation stopped there (cleaned like the final text).
    `context`: repository context (context/provider.py), put before the document.
    """
    if not 0 <= offset <= len(text):
        raise InvalidRequestError(f"offset {offset} is outside the document (0..{len(text)})")
    prefix, suffix = text[:offset], text[offset:]
    # After the auto-indent of a fresh line, prompt from the line start: tokenizers merge a
    # newline with the spaces after it, so a prompt ending in bare spaces is one the model
    # never saw in training (it then answers nothing or one space too many).
    cursor_line = prefix.rsplit("\n", 1)[-1]
    lead = cursor_line if cursor_line and not cursor_line.strip(" \t") and len(cursor_line) < len(prefix) else ""
    prompt_prefix = prefix[: len(prefix) - len(lead)]
    ids = build_prompt(engine, prompt_prefix, suffix, options, context)  # with FIM, the middle starts with `lead`
    healed_text = ""
    if engine.tokenizer.fim_format is None:  # with FIM the prompt ends in <fim_middle>, nothing to heal
        ids, healed_text = split_last_token(engine.tokenizer, ids)
    stop = ("\n\n\n", "\n\n") if options.multiline else ("\n",)
    params = SamplingParams(max_new_tokens=options.max_new_tokens, temperature=options.temperature, stop=stop)
    indent = _indent_of(cursor_line)

    def cleaned(generated: str, truncated: bool = False) -> str:
        return postprocess(from_line_start(generated, lead) if lead else generated, prefix, suffix, truncated)

    result = engine.generate_for(key, ids, params, cancelled=cancelled, healed_text=healed_text,
                                 stop_when=DedentStop(indent, prompt_prefix.rsplit("\n", 1)[-1]),
                                 on_token=_streamed(cleaned, on_text))
    truncated = result.finish_reason is FinishReason.LENGTH
    return Completion(cleaned(result.text, truncated), len(ids), result)


def _streamed(cleaned: Callable[[str], str], on_text: Callable[[str], None] | None):
    """An on_token callback that reports the cleaned text so far to `on_text` when it changed; None for none."""
    if on_text is None:
        return None
    pieces: list[str] = []
    shown = ""

    def on_token(token: int, delta: str) -> None:
        nonlocal shown
        pieces.append(delta)
        text = cleaned("".join(pieces))
        if text != shown:
            shown = text
            on_text(text)

    return on_token


def from_line_start(generated: str, lead: str) -> str:
    """Text generated from the start of the cursor line, made relative to the cursor,
    which sits after the whitespace `lead`: blank lines the model put first and the first
    line's indentation up to the cursor's go."""
    generated = generated.lstrip("\n")
    first_indent = _indent_of(generated)
    if generated[:first_indent].startswith(lead):
        return generated[len(lead):]
    return generated[first_indent:]  # indented less than (or unlike) the cursor: start at the cursor


def _indent_of(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def postprocess(generated: str, prefix: str, suffix: str, truncated: bool = False) -> str:
    """Trim what the model produced into what an editor should insert.

    `truncated`: generation hit the token limit, so the last line is unfinished.
    """
    cursor_line = prefix.rsplit("\n", 1)[-1]
    indent = _indent_of(cursor_line)
    if not cursor_line.strip() and generated.startswith("\n"):
        # The model finished the blank cursor line and went on below: write that line
        # at the cursor instead, minus the indentation the cursor line already has.
        generated = generated.lstrip("\n")
        generated = generated[min(indent, _indent_of(generated)) :]
    # The first line of what follows the cursor: once the model writes it, it has caught up
    # with the document, and what it writes from there is a second copy.
    resumes = next((line.strip() for line in suffix.split("\n")[1:] if line.strip()), "")
    lines = generated.split("\n")
    kept: list[str] = []
    for i, line in enumerate(lines):
        if i > 0 and line.strip() and (_indent_of(line) < indent or line.strip() == resumes):
            break  # the block ended, or the document resumes: what follows is not ours to insert
        kept.append(line.rstrip())
    if truncated and len(lines) > 1 and len(kept) == len(lines):
        # Cut by the token limit mid-line: drop the unfinished line, then any block
        # opener left without a body, so the insertion still parses.
        kept.pop()
        while kept and kept[-1].rstrip().endswith(":"):
            kept.pop()
    text = "\n".join(kept).rstrip()
    # Drop an ending that merely repeats what already follows the cursor.
    first_line = suffix.lstrip().split("\n", 1)[0].strip()
    if first_line and text.endswith(first_line):
        text = text[: -len(first_line)].rstrip()
    return text if text.strip() else ""
