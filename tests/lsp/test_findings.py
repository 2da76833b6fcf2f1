"""The one finding type of both reviews, and merging what the analyzers and the model found."""

import pytest

from loopcoder.lsp.features.findings import ReviewFinding, at_least, merge


def _finding(**kw):
    base = dict(path="app.py", line=10, end_line=10, severity="warning", category="security", message="m")
    return ReviewFinding(**{**base, **kw})


def test_merge_keeps_the_model_words_the_analyzer_rule_and_the_higher_severity():
    model = _finding(severity="error", message="The query concatenates user input: SQL injection.",
                     replacement="    query = \"SELECT * FROM users WHERE name = ?\"")
    bandit = _finding(message="Possible SQL injection vector.", rules=("bandit:B608",), sources=("bandit",))
    [merged] = merge([bandit, model, model])
    assert merged.severity == "error" and merged.rules == ("bandit:B608",)
    assert merged.sources == ("bandit", "loopcoder") and merged.replacement == model.replacement
    assert merged.message.startswith("The query concatenates") and "B608" in merged.message
    assert len(merge([model, _finding(category="style")])) == 2


def test_analyzers_alone_keep_both_rules_and_the_first_message():
    ruff = _finding(message="Possible SQL injection vector through string-based query construction",
                    rules=("ruff:S608",), sources=("ruff",))
    bandit = _finding(message="Possible SQL injection vector through string-based query construction.",
                      rules=("bandit:B608",), sources=("bandit",))
    [merged] = merge([ruff, bandit])
    assert merged.rules == ("ruff:S608", "bandit:B608") and merged.sources == ("ruff", "bandit")
    assert merged.message.startswith("Possible SQL injection")


def test_findings_refuse_bad_ranges():
    with pytest.raises(ValueError):
        _finding(line=5, end_line=4)
    with pytest.raises(ValueError):
        _finding(category="correctness")


def test_at_least_a_severity():
    found = [_finding(severity="info"), _finding(severity="error", line=3, end_line=3)]
    assert [f.line for f in at_least(found, "warning")] == [3]
