"""Where a task's candidate fill comes from: the editor's path, the bare model, or the answer key.

* `EditorFill` asks `lsp.features.completion.complete` at the task's cursor, exactly as
  the language server does for an editor: the same prompt building, token healing, stop
  rules and post-processing. Generation and multi-line holes are explicit (multi-line)
  requests; single-line holes are what an automatic trigger gets: one line.
* `RawFill` sends the plain-text encoding of the prefix (FIM around the suffix for a
  model that has FIM tokens) to `EngineAPI.generate_for`, greedy, with only a token limit
  and simple stop strings: no token healing, no dedent stop, no post-processing. Its
  score against `EditorFill`'s is what our processing adds or loses.
* `canonical_fill` returns the reference solution: every task must pass with it.

Both model fills use one engine key per problem, so a problem's tasks (whose prompts
share the problem's text) reuse its K/V; the previous problem's key is closed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from loopcoder.engine.api import EngineAPI, GenerationResult
from loopcoder.engine.sampling import SamplingParams
from loopcoder.lsp.features.completion import CompletionOptions, complete

from .tasks import GENERATION, MULTI_LINE, SINGLE_LINE, Task

# Tokens a fill may take, per kind: a HumanEval body is 2-29 lines, a line rarely needs 40.
DEFAULT_MAX_TOKENS = {GENERATION: 320, SINGLE_LINE: 64, MULTI_LINE: 160}
# --raw stops: the end of the line, or the start of what follows a function at top level.
RAW_LINE_STOPS = ("\n",)
RAW_BLOCK_STOPS = ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#")


@dataclass(frozen=True)
class Candidate:
    text: str  # inserted at the cursor
    prompt_tokens: int = 0
    cached_tokens: int = 0  # prompt tokens whose K/V an earlier task left
    generated_tokens: int = 0
    seconds: float = 0.0  # to get the fill, prompt building included
    finish_reason: str = ""

    @classmethod
    def from_result(cls, text: str, prompt_tokens: int, result: GenerationResult, seconds: float) -> "Candidate":
        return cls(text, prompt_tokens, result.usage.cached_tokens, result.usage.generated_tokens, seconds,
                   str(result.finish_reason))


Fill = Callable[[Task], Candidate]


def canonical_fill(task: Task) -> Candidate:
    return Candidate(task.canonical)


class _ModelFill:
    def __init__(self, engine: EngineAPI, max_tokens: int | None = None) -> None:
        self.engine = engine
        self.max_tokens = max_tokens  # None: DEFAULT_MAX_TOKENS of the task's kind
        self._key: str | None = None

    def __call__(self, task: Task) -> Candidate:
        key = f"eval://{task.problem_id}"
        if key != self._key:
            self.close()
            self._key = key
        start = time.perf_counter()
        text, prompt_tokens, result = self._fill(key, task, self.max_tokens or DEFAULT_MAX_TOKENS[task.kind])
        return Candidate.from_result(text, prompt_tokens, result, time.perf_counter() - start)

    def close(self) -> None:
        if self._key is not None:
            self.engine.close(self._key)
            self._key = None

    def _fill(self, key: str, task: Task, max_tokens: int) -> tuple[str, int, GenerationResult]:
        raise NotImplementedError


class EditorFill(_ModelFill):
    """The fill an editor would show at the task's cursor."""

    def _fill(self, key: str, task: Task, max_tokens: int) -> tuple[str, int, GenerationResult]:
        options = CompletionOptions(max_new_tokens=max_tokens, multiline=task.kind != SINGLE_LINE, temperature=0.0)
        completion = complete(self.engine, key, task.prefix + task.suffix, len(task.prefix), options)
        return completion.text, completion.prompt_tokens, completion.result


class RawFill(_ModelFill):
    """The model's own continuation of the bare prompt."""

    def _fill(self, key: str, task: Task, max_tokens: int) -> tuple[str, int, GenerationResult]:
        tokenizer = self.engine.tokenizer
        if tokenizer.fim_format is None:
            ids = tokenizer.encode(task.prefix, add_special_tokens=True, parse_special=False)
        else:
            ids = tokenizer.fim_ids(tokenizer.encode(task.prefix, parse_special=False),
                                    tokenizer.encode(task.suffix, parse_special=False))
        stops = RAW_LINE_STOPS if task.kind == SINGLE_LINE else RAW_BLOCK_STOPS
        result = self.engine.generate_for(key, ids, SamplingParams(max_new_tokens=max_tokens, temperature=0.0, stop=stops))
        return result.text, len(ids), result
