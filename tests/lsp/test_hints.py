"""The hint policy (no code, one retry, then a clear error), with stubbed answers: a unit test of our
post-processing. The real model runs in test_real_model.py."""

import pytest

from loopcoder.engine.errors import OutputPolicyError
from loopcoder.engine.sampling import FinishReason
from loopcoder.lsp.features import hints

from .stub_engine import StubEngine

QUESTION = "Each query sums its range again. What could you compute once so that every range sum takes O(1)?"


def attempts(*answers, cut_short=False):
    calls = []

    def attempt(retry):
        calls.append(retry)
        return answers[len(calls) - 1], cut_short

    return attempt, calls


@pytest.mark.parametrize("code", [
    "Try this:\n\n```python\nprefix = [0]\n```",
    "Think about it:\n\n    total = 0\n    for x in xs:\n        total += x",
    "Keep a running total.\nprefix[i + 1] = prefix[i] + xs[i]",
    "for i in range(len(xs)):",
    "def solve(xs, qs):",
    "return [p[j] - p[i] for i, j in qs]",
    "Use `prefix = list(itertools.accumulate(xs, initial=0))` here.",
    "~~~\nx\n~~~",
])
def test_code_is_refused(code):
    assert hints.code_in(code) is not None


@pytest.mark.parametrize("prose", [
    QUESTION,
    "What does `sum(xs[i:j])` cost for each query? If n = 10^5, how many additions is that?",
    "- Which work repeats between queries?\n- What stays the same?",
    "Consider the first example: what if you stored partial sums?",
])
def test_questions_pass(prose):
    assert hints.code_in(prose) is None


def test_a_clean_first_answer_is_kept():
    attempt, calls = attempts(QUESTION)
    assert hints.socratic(attempt) == QUESTION and calls == [False]


def test_code_is_refused_once_then_the_retry_is_kept():
    attempt, calls = attempts("Here you go:\n```python\nprint(1)\n```", QUESTION)
    assert hints.socratic(attempt) == QUESTION and calls == [False, True]


def test_code_twice_is_a_clear_error():
    attempt, calls = attempts("x = 1", "```\nprint(2)\n```")
    with pytest.raises(OutputPolicyError, match=r"code instead of a hint twice \(a line of code .*then a fenced"):
        hints.socratic(attempt)
    assert calls == [False, True]
    attempt, _ = attempts("", "   ")
    with pytest.raises(OutputPolicyError, match="it was empty"):
        hints.socratic(attempt)


def test_answers_are_cleaned():
    attempt, _ = attempts("Why loop twice? Why loop twice? Here is a faster way:")
    assert hints.socratic(attempt) == "Why loop twice?"
    attempt, _ = attempts("What repeats? Could you keep a running", cut_short=True)
    assert hints.socratic(attempt) == "What repeats?"


def test_the_retry_is_reminded_sampled_and_both_stop_at_a_fence():
    engine = StubEngine(["Here:", QUESTION])  # the first answer is only a lead-in to code: empty once cleaned
    problem = "Answer many range-sum queries over a fixed list."
    text = hints.hint(engine, "file:///s.py", "def f(xs, qs):\n    return [sum(xs[i:j]) for i, j in qs]\n",
                      language="python", problem=problem)
    assert text == QUESTION
    first, retry = engine.requests
    assert first.key == retry.key == "file:///s.py#hint"
    assert problem in first.prompt and "```python\ndef f(xs, qs):" in first.prompt
    assert hints.RETRY_REMINDER.strip() in retry.prompt and hints.RETRY_REMINDER.strip() not in first.prompt
    assert retry.prompt.startswith(first.prompt[: first.prompt.index("def f(xs, qs)")])  # the retry reuses the prefix
    assert first.params.temperature == 0.0 and retry.params.temperature == hints.RETRY_TEMPERATURE
    assert retry.params.seed == hints.RETRY_SEED and first.params.stop == retry.params.stop == hints.FENCES
    assert first.params.max_new_tokens == hints.HINT_TOKENS


def test_the_hint_is_cut_at_its_last_sentence_when_out_of_tokens():
    engine = StubEngine([QUESTION + " And then what if"], finish=FinishReason.LENGTH)
    assert hints.hint(engine, "k", "x = 1\n") == QUESTION
