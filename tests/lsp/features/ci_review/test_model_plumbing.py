"""The model's part of a review, with a stub engine: prompts, schema, one session per file, and the
checks on its answers. A unit test of our post-processing, not of the model."""

import json

from loopcoder.lsp.features.ci_review import diff
from loopcoder.lsp.features.ci_review.model_review import findings_of, hunk_schema
from loopcoder.lsp.features.ci_review.review import ReviewOptions, review_changes

from .conftest import LOOP_LINES, SQL_LINE, init_repo, commit_all
from ...stub_engine import StubEngine


def _answer(*items):
    keys = ("line", "end_line", "severity", "category", "message", "replacement")
    return json.dumps({"findings": [dict(zip(keys, item)) for item in items]})


def test_each_hunk_is_asked_in_one_session_per_file_with_its_lines_in_the_schema(seeded_repo):
    changes = diff.from_git("HEAD~1..HEAD", seeded_repo)
    hunks = changes.files[0].hunks
    engine = StubEngine([_answer() for _ in hunks])
    review_changes(changes, lambda: engine, ReviewOptions(analyzers=True))
    assert len(engine.requests) == len(hunks) and len({r.key for r in engine.requests}) == 1
    assert engine.requests[0].key.endswith("/app.py#ci-review")
    for request, hunk in zip(engine.requests, hunks):
        line = request.params.json_schema["properties"]["findings"]["items"]["properties"]["line"]
        assert line == {"enum": list(hunk.added)}
    prompt = next(r.prompt for r in engine.requests if f"{SQL_LINE} + |" in r.prompt)
    assert "Review the change to app.py (python)" in prompt and "import os\nimport sqlite3" in prompt
    assert "lines 1-20, new line numbers" in prompt  # the hunk spans three scopes: a window
    assert "- line 10: bandit:B608" in prompt  # the analyzer's finding is shown to the model


def test_hunks_of_one_file_share_the_prompt_prefix(tmp_path):
    repo = init_repo(tmp_path / "r")
    body = "import json\n\n" + "".join(f"def f{i}(x):\n    return x + {i}\n\n\n" for i in range(20))
    (repo / "m.py").write_text(body)
    commit_all(repo, "base")
    (repo / "m.py").write_text(body.replace("return x + 1\n", "return x - 1\n").replace("return x + 18\n", "return 0\n"))
    commit_all(repo, "two hunks")
    changes = diff.from_git("HEAD~1..HEAD", repo)
    assert len(changes.files[0].hunks) == 2
    engine = StubEngine([_answer(), _answer()])
    review_changes(changes, lambda: engine, ReviewOptions(analyzers=False))
    first, second = (r.prompt for r in engine.requests)
    shared = next(i for i, (a, b) in enumerate(zip(first, second)) if a != b)
    assert "Its imports:\n\nimport json\n\n" in first[:shared]  # all but the hunk's own lines is reused


def test_model_findings_merge_with_the_analyzers_and_keep_the_hunk_lines(seeded_repo):
    changes = diff.from_git("HEAD~1..HEAD", seeded_repo)
    fix = 'query = "SELECT * FROM users WHERE name = ?"'
    answers = []
    for hunk in changes.files[0].hunks:
        items = []
        if SQL_LINE in hunk.added:
            items.append((SQL_LINE, SQL_LINE, "error", "security", "The query  concatenates input.", fix))
        if LOOP_LINES[0] in hunk.added:
            items.append((LOOP_LINES[1], LOOP_LINES[0], "info", "performance", "Nested loops are O(n*m).", None))
        answers.append(_answer(*items))
    report = review_changes(changes, lambda: StubEngine(answers), ReviewOptions(), model_name="stub")
    sql = next(f for f in report.findings if f.line == SQL_LINE)
    assert sql.severity == "error" and sql.sources == ("bandit", "loopcoder") and sql.rules == ("bandit:B608",)
    assert sql.message.startswith("The query concatenates input.") and sql.replacement == "    " + fix
    loop = next(f for f in report.findings if f.category == "performance")
    assert (loop.line, loop.end_line) == LOOP_LINES  # a reversed range is put in order
    assert report.model == "stub"


def test_answers_outside_the_hunk_are_dropped_and_no_op_fixes_removed(seeded_repo):
    hunk = diff.from_git("HEAD~1..HEAD", seeded_repo).files[0].hunks[-1]
    inside = hunk.added[0]
    text = next(line.text for line in hunk.lines if line.new_line == inside)
    value = {"findings": [
        {"line": 2, "end_line": 2, "severity": "info", "category": "style", "message": "old line", "replacement": None},
        {"line": inside, "end_line": inside, "severity": "info", "category": "style", "message": "  ", "replacement": None},
        {"line": inside, "end_line": inside, "severity": "info", "category": "style", "message": "same",
         "replacement": text},
    ]}
    found = findings_of(value, "app.py", hunk, [])
    assert [(f.line, f.message, f.replacement) for f in found] == [(inside, "same", None)]


def test_an_answer_cut_short_keeps_its_finished_findings_and_says_so(seeded_repo):
    from loopcoder.engine.sampling import FinishReason

    changes = diff.from_git("HEAD~1..HEAD", seeded_repo)
    cut = _answer((SQL_LINE, SQL_LINE, "error", "security", "Injection.", None))[:-2] + ', {"line": 1'
    engine = StubEngine([cut] * len(changes.files[0].hunks), finish=FinishReason.LENGTH)
    report = review_changes(changes, lambda: engine, ReviewOptions(analyzers=False))
    assert [f.line for f in report.findings] == [SQL_LINE]
    assert any("ran out of tokens" in note for note in report.notes)


def test_the_schema_lists_the_new_lines_only():
    hunk = diff.Hunk("a.py", 5, 9, (diff.DiffLine(" ", 5, "a"), diff.DiffLine("+", 6, "b"), diff.DiffLine("-", None, "c"),
                                    diff.DiffLine("+", 7, "d"), diff.DiffLine(" ", 8, "e")))
    items = hunk_schema(hunk)["properties"]["findings"]["items"]
    assert list(items["properties"])[:2] == ["line", "end_line"] and items["properties"]["end_line"] == {"enum": [6, 7]}
    assert items["required"][:2] == ["line", "end_line"]


def test_no_model_is_loaded_for_an_empty_change_set(tmp_path):
    def never():
        raise AssertionError("the model was loaded for nothing")

    report = review_changes(diff.from_diff("", tmp_path), never)
    assert report.findings == [] and report.files == []
