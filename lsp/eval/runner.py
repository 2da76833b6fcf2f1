"""Run tasks: get each one's fill, execute the filled program in the sandbox, record and score.

`evaluate` yields one row per task, in task order. The sandbox runs in `jobs` worker
threads (each waits on a child process), so the next fill is generated while the last
program runs. `run_eval` adds what a command line needs: the JSONL file (a row is
written as soon as it is known), progress on stderr, and the markdown summary, also
after Ctrl-C, for the tasks done so far.
"""

from __future__ import annotations

import json
import math
import sys
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Iterator, Sequence

from tqdm import tqdm

from loopcoder.engine.errors import InvalidRequestError

from .fills import Candidate, Fill
from .sandbox import ExecResult, SandboxLimits, isolation, run_python
from .scoring import markdown_summary, score
from .tasks import Task

STDERR_TAIL_CHARS = 400  # of a failing program's stderr, kept in its row: the assertion or exception


@dataclass(frozen=True)
class EvalRun:
    """What produced the rows, for the summary's heading."""

    title: str  # e.g. "HumanEval: default SmolLM2-135M-Instruct Q4_1 GGUF, editor path"
    command: str = ""  # the command line that reproduces it
    machine: str = ""  # date, CPU, threads


def limits_for(timeout_s: float) -> SandboxLimits:
    """The sandbox's default limits with a wall-clock timeout, and a CPU limit to match it."""
    return replace(SandboxLimits(), timeout_s=timeout_s, cpu_s=max(1, math.ceil(timeout_s)))


def evaluate(tasks: Sequence[Task], fill: Fill, limits: SandboxLimits = SandboxLimits(), jobs: int = 1) -> Iterator[dict]:
    """One result row per task, in order; at most `jobs` programs run at once."""
    if jobs < 1:
        raise InvalidRequestError(f"--jobs must be at least 1, not {jobs}")
    pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="sandbox")
    pending: deque[tuple[Task, Candidate, Future[ExecResult]]] = deque()
    try:
        for task in tasks:
            candidate = fill(task)
            pending.append((task, candidate, pool.submit(run_python, task.program(candidate.text), limits)))
            while pending and (len(pending) > jobs or pending[0][2].done()):
                yield result_row(*_resolved(pending.popleft()))
        while pending:
            yield result_row(*_resolved(pending.popleft()))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # a running program ends by its own time limit


def _resolved(item: tuple[Task, Candidate, Future[ExecResult]]) -> tuple[Task, Candidate, ExecResult]:
    task, candidate, future = item
    return task, candidate, future.result()


def result_row(task: Task, candidate: Candidate, outcome: ExecResult) -> dict:
    return {
        "task_id": task.id,
        "kind": task.kind,
        "problem_id": task.problem_id,
        "status": outcome.status,
        "candidate": candidate.text,
        "seconds": round(candidate.seconds, 4),
        "exec_seconds": round(outcome.seconds, 4),
        "prompt_tokens": candidate.prompt_tokens,
        "cached_tokens": candidate.cached_tokens,
        "generated_tokens": candidate.generated_tokens,
        "finish_reason": candidate.finish_reason,
        "error": "" if outcome.passed else exception_name(outcome.stderr),
        "stderr_tail": "" if outcome.passed else outcome.stderr[-STDERR_TAIL_CHARS:],
    }


def exception_name(stderr: str) -> str:
    """The exception a failed program died of, from its traceback's last line: "IndentationError", ...; "" if none."""
    lines = stderr.strip().splitlines()
    name = lines[-1].split(":", 1)[0].strip().rsplit(".", 1)[-1] if lines else ""  # json.decoder.JSONDecodeError
    return name if name.isidentifier() and name[0].isupper() else ""


def run_eval(tasks: Sequence[Task], fill: Fill, run: EvalRun, *, limits: SandboxLimits = SandboxLimits(),
             jobs: int = 1, out: Path | None = None, summary_to: Path | None = None,
             progress: bool = True, stdout: IO[str] | None = None) -> list[dict]:
    """Evaluate `tasks`, write rows to `out`, print the summary to `stdout` (default: sys.stdout) and progress
    to stderr; on Ctrl-C summarize the tasks done (programs still running are dropped), then re-raise."""
    rows: list[dict] = []
    stdout = stdout or sys.stdout
    tty = sys.stderr.isatty()
    bar = tqdm(total=len(tasks), file=sys.stderr, disable=not progress, unit="task", dynamic_ncols=True,
               mininterval=0.2 if tty else 10.0)  # a log file gets a line every ten seconds
    sink = _open_rows(out) if out is not None else None
    interrupted, passed = False, 0
    results = evaluate(tasks, fill, limits, jobs)
    try:
        for row in results:
            rows.append(row)
            if sink is not None:
                sink.write(json.dumps(row) + "\n")
                sink.flush()
            passed += row["status"] == "passed"
            bar.set_postfix_str(f"pass {passed}/{len(rows)} ({100 * passed / len(rows):.1f}%)", refresh=False)
            bar.update()
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        results.close()  # stops the sandbox pool now, not when the generator is collected
        bar.close()
        if sink is not None:
            sink.close()
        summary = summary_markdown(rows, run, len(tasks), interrupted)
        print(summary, file=stdout, flush=True)
        if summary_to is not None:
            summary_to.parent.mkdir(parents=True, exist_ok=True)
            summary_to.write_text(summary + "\n", encoding="utf-8")
    return rows


def _open_rows(path: Path) -> IO[str]:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return path.open("w", encoding="utf-8")
    except OSError as e:
        raise InvalidRequestError(f"cannot write the results file {path}: {e}") from None


def summary_markdown(rows: list[dict], run: EvalRun, planned: int, interrupted: bool = False) -> str:
    lines = [f"### {run.title}", ""]
    if run.command:
        lines += [f"`{run.command}`", ""]
    if run.machine:
        lines += [run.machine, ""]
    if interrupted or len(rows) < planned:
        lines += [f"**Partial: {len(rows)} of {planned} tasks ran{' (interrupted)' if interrupted else ''}.**", ""]
    lines.append(markdown_summary(score(rows)) if rows else "(no task finished)")
    guards = ", ".join(name for name, on in isolation().items() if on) or "none"
    lines += ["", f"pass@1 is greedy; 95% CI is the Wilson score interval. Sandbox isolation: {guards}."]
    return "\n".join(lines)
