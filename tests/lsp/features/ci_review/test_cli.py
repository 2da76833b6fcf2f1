"""`loopcoder review` and `loopcoder hint` on the command line: inputs, formats, exit codes, bad input."""

import json

import pytest

from loopcoder.lsp.cli import main
from loopcoder.lsp.features import analyzers

from .conftest import SQL_LINE, git

needs_analyzers = pytest.mark.skipif(not (analyzers.executable("ruff") and analyzers.executable("bandit")),
                                     reason="ruff and bandit are dependencies of loopcoder: reinstall it")


def review(capsys, *argv):
    status = main(["review", "--no-model", *argv])
    out, err = capsys.readouterr()
    return status, out, err


@needs_analyzers
def test_git_range_to_github_json_with_fail_on(seeded_repo, capsys):
    status, out, _ = review(capsys, "--git", "HEAD~1..HEAD", "--root", str(seeded_repo), "--format", "github")
    assert status == 0
    body = json.loads(out)
    assert any(c["line"] == SQL_LINE and "B608" in c["body"] for c in body["comments"])
    args = ("--git", "HEAD~1..HEAD", "--root", str(seeded_repo))
    assert review(capsys, *args, "--fail-on", "warning")[0] == 1
    assert review(capsys, *args, "--fail-on", "error")[0] == 0  # B608 and F401 are warnings
    assert review(capsys, *args, "--fail-on", "never")[0] == 0


@needs_analyzers
def test_diff_file_stdin_and_output_file(seeded_repo, tmp_path, capsys, monkeypatch):
    patch = tmp_path / "change.diff"
    patch.write_text(git(seeded_repo, "diff", "HEAD~1..HEAD"))
    out_file = tmp_path / "review.sarif"
    status, out, _ = review(capsys, "--diff", str(patch), "--root", str(seeded_repo), "--format", "sarif",
                            "--output", str(out_file))
    assert status == 0 and out == ""
    results = json.loads(out_file.read_text())["runs"][0]["results"]
    assert any(r["ruleId"] == "bandit:B608" for r in results)
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO(patch.read_text()))
    status, out, _ = review(capsys, "--diff", "-", "--root", str(seeded_repo), "--color", "never")
    assert f"app.py:{SQL_LINE}: warning [security]" in out and "\033[" not in out


def test_an_empty_diff_is_an_empty_report_and_exit_0(tmp_path, capsys):
    empty = tmp_path / "empty.diff"
    empty.write_text("")
    for fmt in ("text", "sarif", "github"):
        status, out, _ = review(capsys, "--diff", str(empty), "--format", fmt, "--fail-on", "info")
        assert status == 0
    assert json.loads(out)["comments"] == []
    # without --no-model too: nothing to review, so no model is loaded
    assert main(["review", "--diff", str(empty), "--fail-on", "info"]) == 0


def test_awkward_diff_runs_through_the_cli(awkward_repo, capsys):
    status, out, _ = review(capsys, "--git", "HEAD~1..HEAD", "--root", str(awkward_repo), "--format", "github")
    assert status == 0
    assert {c["path"] for c in json.loads(out)["comments"]} <= {"new_name.py", "windows.py"}


@pytest.mark.parametrize("argv, message", [
    (["--diff", "/no/such.diff"], "the diff /no/such.diff does not exist"),
    (["--git", "HEAD~1..nope"], "is not a commit"),
    (["--git", "HEAD"], "wants a range BASE..HEAD"),
    ([], "give exactly one of --git"),
    (["--git", "HEAD~1..HEAD", "--diff", "x.diff"], "not --git and --diff"),
    (["--diff", "-", "--output", "/no/such/dir/out.json"], "is not a directory"),
    (["--diff", "-", "--max-tokens", "0"], "--max-tokens must be at least 1"),
    (["no_such_file.py"], "does not exist"),
])
def test_bad_input_is_a_clear_error(seeded_repo, argv, message, capsys, monkeypatch):
    monkeypatch.chdir(seeded_repo)
    status, _, err = review(capsys, *argv)
    assert status == 2 and message in err and err.startswith("loopcoder: error: ")


def test_not_a_git_repository(tmp_path, capsys):
    status, _, err = review(capsys, "--git", "main..HEAD", "--root", str(tmp_path))
    assert status == 2 and "is not inside a git repository" in err


def test_a_file_that_is_not_a_diff(tmp_path, capsys):
    (tmp_path / "letter.txt").write_text("Dear reviewer,\n")
    status, _, err = review(capsys, "--diff", str(tmp_path / "letter.txt"))
    assert status == 2 and "holds no unified diff" in err


def test_unknown_format_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["review", "--diff", "-", "--format", "xml"])
    assert exit_info.value.code == 2 and "invalid choice: 'xml'" in capsys.readouterr().err


@pytest.mark.parametrize("which, message", [("problem", "the problem file"), ("solution", "the solution file")])
def test_hint_with_a_missing_file(tmp_path, capsys, which, message):
    (tmp_path / "problem.md").write_text("Sum ranges fast.")
    (tmp_path / "solution.py").write_text("def f(): pass\n")
    files = {"problem": str(tmp_path / "problem.md"), "solution": str(tmp_path / "solution.py")}
    files[which] = str(tmp_path / "missing")
    assert main(["hint", files["problem"], files["solution"]]) == 2
    assert f"{message} {tmp_path / 'missing'} does not exist" in capsys.readouterr().err


def test_hint_with_an_empty_file(tmp_path, capsys):
    (tmp_path / "problem.md").write_text("  \n")
    (tmp_path / "solution.py").write_text("def f(): pass\n")
    assert main(["hint", str(tmp_path / "problem.md"), str(tmp_path / "solution.py")]) == 2
    assert "is empty: a hint needs the problem statement" in capsys.readouterr().err


def test_review_and_hint_take_the_remote_backend_arguments():
    from loopcoder.lsp.cli import build_parser

    for argv in (["review", "--diff", "-"], ["hint", "p.md", "s.py"]):
        args = build_parser().parse_args(argv + ["--backend", "openai", "--url", "http://gpu:8000", "--model", "m"])
        assert (args.backend, args.url, args.model) == ("openai", "http://gpu:8000", "m")
