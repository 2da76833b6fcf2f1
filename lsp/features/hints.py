"""A Socratic hint: one question or nudge about the approach and its complexity, never the solution.

Editor-neutral. It backs the LSP command `loopcoder.hint` (a selection of a document)
and `loopcoder hint PROBLEM_FILE SOLUTION_FILE` (a problem statement and the student's
code). The policy is the same for both: decoding stops where a code block would open, and an
answer that still contains code (a fence, an indented block, lines that read as
statements) or nothing at all is refused; the model is asked once more, reminded and
sampled, and when that answer is refused too the request fails with
`OutputPolicyError` rather than hand the student a solution.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Callable

from loopcoder.engine.api import CancelCheck, EngineAPI
from loopcoder.engine.errors import OutputPolicyError
from loopcoder.engine.sampling import FinishReason

from .prompts import ActionOptions, Progress, Span, chat_ids, fit_prompt, run_chat, selected_code
from .prose import drop_lead_in, drop_repeats, whole_sentences

HINT_SYSTEM = (
    "You are a Socratic programming tutor. Never write the solution and never write code. Ask "
    "one or two short guiding questions that point the student toward the key idea (for example a "
    "data structure, prefix sums, a complexity bound, an invariant or an edge case) so they find "
    "the answer themselves."
)
HINT_ASK = "I am working on this code and I am stuck. Give me a hint, not the answer."
RETRY_REMINDER = ("\n\nAnswer in plain sentences only: no code, no code blocks, no statements. Ask one question "
                  "about my approach or its time complexity.")
HINT_TOKENS = 160  # a hint is a question or two
RETRY_TEMPERATURE = 0.7  # a greedy retry would often repeat the refused answer
RETRY_SEED = 0  # ... but the same inputs still give the same hint
HINT_EXAMPLES = ((
    f"{HINT_ASK}\n\n```python\ndef has_pair_with_sum(numbers, target):\n    for i in range(len(numbers)):\n"
    "        for j in range(i + 1, len(numbers)):\n            if numbers[i] + numbers[j] == target:\n"
    "                return True\n    return False\n```",
    "Your loops compare every pair, so the work grows with the square of the list. When you reach a number, "
    "which other number would complete the pair? What could you remember about the numbers you have already "
    "seen so that checking for that partner takes constant time?",
),)

# Decoding stops where a code block would open: what follows a fence is the solution, and
# generating it would only cost time. The prose before it is still checked below.
FENCES = ("```", "~~~")

Attempt = Callable[[bool], tuple[str, bool]]  # retry? -> (answer, cut short by the token budget)


def hint(engine: EngineAPI, key: str, text: str, span: Span | None = None, language: str = "",
         options: ActionOptions = ActionOptions(), cancelled: CancelCheck | None = None,
         progress: Progress | None = None, problem: str = "") -> str:
    """A Socratic hint about lines `span` of `text` (the student's code), for `problem` when given.

    Raises OutputPolicyError when both tries answered with code.
    """
    code, fence = selected_code(text, span)
    quoted = f"{fence}{language}\n{code}\n{fence}"
    # The problem and the code are the user's text: one plain-encoded slot carries both.
    material = f"The problem:\n{problem.strip()}\n\nMy solution so far:\n{quoted}" if problem.strip() else quoted
    before = f"{HINT_ASK}\n\n"

    def attempt(retry: bool) -> tuple[str, bool]:
        after = RETRY_REMINDER if retry else ""
        ids = fit_prompt(engine, chat_ids(engine, HINT_SYSTEM, before, material, after, examples=HINT_EXAMPLES),
                    options, "this hint")
        tries = replace(options, temperature=max(options.temperature, RETRY_TEMPERATURE)) if retry else options
        result = run_chat(engine, f"{key}#hint", ids, tries, cancelled, progress, max_new_tokens=HINT_TOKENS,
                          seed=RETRY_SEED if retry else None, stop=FENCES)
        return result.text, result.finish_reason is FinishReason.LENGTH

    return socratic(attempt)


def socratic(attempt: Attempt) -> str:
    """The hint policy: clean the first answer, refuse it if it holds code, try once more, else fail."""
    reasons = []
    for retry in (False, True):
        answer, cut_short = attempt(retry)
        reason = code_in(answer)  # before cleaning, which joins sentences and would hide a block's shape
        cleaned = drop_lead_in(drop_repeats(answer.strip()))
        if cut_short:
            cleaned = whole_sentences(cleaned)
        reason = reason or ("it was empty" if not cleaned else None)
        if reason is None:
            return cleaned
        reasons.append(reason)
    raise OutputPolicyError(
        f"the model answered with code instead of a hint twice ({reasons[0]}; then {reasons[1]}), and a hint must "
        "not hand over the solution: try again with a smaller selection or a larger model")


# -- what counts as code ----------------------------------------------------------------------

_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})", re.MULTILINE)
_LONG_INLINE = re.compile(r"`[^`\n]{40,}`")
_STATEMENT_PATTERNS = (
    re.compile(r"^(async\s+)?def\s+\w+\s*\("),  # def f(
    re.compile(r"^class\s+\w+\s*[:(]"),
    re.compile(r"^(for|while|if|elif|else|with|try|except|finally)\b[^?]*:$"),  # for x in xs:
    re.compile(r"^(return|yield|raise|import)\s+\S|^from\s+\S+\s+import\s"),
    re.compile(r"^(#include|using namespace|public |private |static |function\s|const\s|let\s|var\s)"),
    re.compile(r"^[A-Za-z_][\w.]*(\[[^\]]*\])*\s*([-+*/%&|^]|//|<<|>>)?=\s*[^=\s][^?]*$"),  # x = ..., xs[i] += 1
    re.compile(r"^[A-Za-z_][\w.]*\([^)]*\)\s*;?$"),  # print(x)
    re.compile(r"[;{}]$"),
)


def code_in(text: str) -> str | None:
    """Why `text` reads as containing code (a fence, an indented block, a statement line), or None."""
    if _FENCE.search(text):
        return "a fenced code block"
    if _LONG_INLINE.search(text):
        return "a long inline code span"
    previous_blank = True
    for line in text.split("\n"):
        stripped = line.strip().strip("`").strip()
        if line[:1] in (" ", "\t") and previous_blank and stripped and not stripped.startswith(("-", "*", "+")):
            return f"an indented code block ({stripped[:40]!r})"
        if stripped and any(p.search(stripped) for p in _STATEMENT_PATTERNS):
            return f"a line of code ({stripped[:40]!r})"
        previous_blank = not line.strip()
    return None
