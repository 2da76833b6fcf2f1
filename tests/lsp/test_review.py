"""The editor's review without a server: turning the model's answer into findings on the lines it
quotes, grounding in ruff and bandit, merging as the CI review does, offering only sound fixes,
and following edits.

The stub engine answers with canned text (the answers the default model gave, among them);
the analyzers are the real ruff and bandit. `test_review_with_the_real_model_*` runs the model.
"""

import ast
import json
from pathlib import Path

import pytest

from loopcoder.engine.errors import InvalidRequestError
from loopcoder.lsp.features import analyzers, findings_answer
from loopcoder.lsp.features.findings import ReviewFinding
from loopcoder.lsp.features.prompts import ActionOptions, Span
from loopcoder.lsp.features.review import (
    DocumentOrigin,
    Finding,
    analyzable,
    editor_finding,
    model_findings,
    quoted_line,
    relocate,
    review,
    review_schema,
)

from .stub_engine import StubEngine

FLASK = (Path(__file__).parents[2] / "docs" / "examples" / "flask_app.py").read_text()
LINES = FLASK.splitlines()
SQL_LINE = 9  # 0-based: `rows = db.execute("SELECT * FROM users WHERE name = '" + name + "'").fetchall()`
PARAMETERIZED = '    rows = db.execute("SELECT * FROM users WHERE name = ?", (name,)).fetchall()'
WHOLE = Span(0, len(LINES) - 1)
KEYS = ("line", "quote", "severity", "category", "message", "replacement")
# What the default model answered before the review was grounded (issue 19): the worked example's
# findings, pasted onto lines 1 and 2, with another line's code as the "fix".
HALLUCINATED = [
    (1, "os.system(\"ls \" + user_path)", "error", "security",
     "The shell command is built from user input, which allows command injection.", "sqlite3.connect("),
    (2, "return True", "info", "style", "The function always returns True, so the result says nothing.", None),
]

needs_analyzers = pytest.mark.skipif(not (analyzers.executable("ruff") and analyzers.executable("bandit")),
                                     reason="ruff and bandit are dependencies of loopcoder: reinstall it")


def _answer(*items) -> dict:
    return {"findings": [dict(zip(KEYS, item)) for item in items]}


def _model(*items, grounded=(), span=WHOLE):
    return model_findings(_answer(*items), LINES, span, list(grounded), "flask_app.py")


def _bandit_on_sql_line(**kw) -> ReviewFinding:
    base = dict(path="flask_app.py", line=SQL_LINE + 1, end_line=SQL_LINE + 1, severity="warning",
                category="security", message="Possible SQL injection vector through string-based query construction.",
                rules=("bandit:B608",), sources=("bandit",))
    return ReviewFinding(**{**base, **kw})


# -- the model's findings: quotes, messages, fixes --------------------------------------------------


def test_a_finding_whose_quote_is_on_its_line_stays_with_an_indented_fix():
    fix = 'rows = db.execute("SELECT * FROM users WHERE name = ?", (name,)).fetchall()'
    [f] = _model((SQL_LINE + 1, "db.execute(", "error", "security", "SQL  built by\nconcatenation.", fix))
    assert (f.line, f.end_line, f.message, f.sources) == (SQL_LINE + 1, SQL_LINE + 1, "SQL built by concatenation.",
                                                          ("loopcoder",))
    assert f.replacement == "    " + fix  # the model dropped the indentation: it is put back


def test_a_quote_on_another_line_moves_the_finding_there():
    [f] = _model((2, "sqlite3.connect(\"app.db\")", "info", "style", "Name the database file once.", None))
    assert f.line == 9  # 1-based: the line that holds the quote
    assert quoted_line(LINES, 1, "sqlite3.connect(", WHOLE) == 8
    assert quoted_line(LINES, 10, "  request.args[\"name\"]  ", WHOLE) == 7  # whitespace runs count as one


def test_a_finding_that_nothing_supports_is_dropped():
    assert _model(*HALLUCINATED) == []
    assert _model((1, "(", "info", "style", "A quote without code supports nothing.", None)) == []
    assert _model((9, "sqlite3.connect(", "info", "style", "Outside the selection.", None), span=Span(0, 3)) == []


def test_an_analyzer_finding_of_its_category_on_its_line_supports_a_finding_without_its_quote():
    item = (SQL_LINE + 1, "cursor.execute(query)", "error", "security", "The query concatenates user input.", None)
    assert _model(item) == []
    [f] = _model(item, grounded=[_bandit_on_sql_line()])
    assert f.line == SQL_LINE + 1
    assert _model(item[:3] + ("style",) + item[4:], grounded=[_bandit_on_sql_line()]) == []  # another category


def test_duplicates_and_no_op_fixes_are_dropped():
    found = _model((10, "db.execute(", "error", "security", "Injection.", LINES[SQL_LINE].strip()),
                   (10, "db.execute(", "error", "security", "Injection.", None),
                   (5, "app = Flask", "warning", "style", "  ", None))
    assert [(f.line, f.replacement) for f in found] == [(10, None)]


def test_the_schema_asks_for_the_quote_after_the_line_and_bounds_the_lines():
    items = review_schema(8, 11)["properties"]["findings"]["items"]
    assert list(items["properties"])[:2] == ["line", "quote"] and items["required"][:2] == ["line", "quote"]
    assert (items["properties"]["line"]["minimum"], items["properties"]["line"]["maximum"]) == (8, 11)
    assert "quote" not in findings_answer.finding_schema(8, 11)["properties"]["findings"]["items"]["properties"]


def test_fix_keeps_a_multi_line_replacement_indented():
    original = "        total = total + x"
    assert findings_answer.indented_fix("total += x\nprint(total)", original, "        ") == \
        "        total += x\n        print(total)"
    assert findings_answer.indented_fix("   ", original, "        ") is None


@pytest.mark.parametrize("text, lines", [
    ('{"findings": [', []),
    ('{"findings": [{"line": 2, "severity": "info", "category": "style", "message": "a } b", "replacement": null}, {"li',
     [2]),
    ('{"findings": [{"line": 2, "severity": "info", "category": "style", "message": "x", "replacement": "{\\"}"}, '
     '{"line": 3, "severity": "info", "category": "style", "message": "y", "replacement": null}, {"line": 4, "sev',
     [2, 3]),
    ('', []),
])
def test_complete_findings_of_an_answer_cut_short(text, lines):
    assert [f["line"] for f in findings_answer.complete_findings(text)["findings"]] == lines


# -- the whole review: analyzers, model, merge, fixes --------------------------------------------------


@needs_analyzers
def test_the_review_of_the_demo_file_names_the_sql_injection_and_drops_what_the_model_made_up():
    engine = StubEngine([json.dumps(_answer(*HALLUCINATED))])
    result = review(engine, "flask", FLASK, language="python")
    assert [a.split()[0] for a in result.analyzers] == ["ruff", "bandit"] and result.notes == []
    prompt = engine.requests[0].prompt
    assert "Static analyzers on these lines:\n" in prompt
    assert "\n- line 10: bandit:B608 Possible SQL injection" in prompt
    made_up = [f for f in result.findings if "shell" in f.message or "returns True" in f.message]
    assert made_up == []
    [sql] = [f for f in result.findings if f.line == SQL_LINE and "SQL injection" in f.message]
    assert sql.category == "security" and sql.rules == ("bandit:B608",)
    assert sql.replacement == PARAMETERIZED
    ast.parse("\n".join(LINES[:SQL_LINE] + [sql.replacement] + LINES[SQL_LINE + 1 :]))
    assert all(f.replacement is None or f.line == SQL_LINE for f in result.findings)


@needs_analyzers
def test_the_model_and_the_analyzer_on_one_line_merge_as_in_ci():
    answer = _answer((SQL_LINE + 1, "db.execute(", "error", "security", "The query concatenates the user's name.",
                      "sqlite3.connect("))
    result = review(StubEngine([json.dumps(answer)]), "flask", FLASK, language="python")
    [sql] = [f for f in result.findings if f.line == SQL_LINE]
    assert sql.severity == "error" and sql.rules == ("bandit:B608",)
    assert sql.message.startswith("The query concatenates the user's name.") and "B608" in sql.message
    assert sql.replacement == PARAMETERIZED  # the model's fix does not parse: the derived one stands


@needs_analyzers
def test_the_workspace_ruff_settings_apply(tmp_path):
    (tmp_path / "ruff.toml").write_text('[lint]\nselect = ["F401"]\n')
    (tmp_path / "pkg").mkdir()
    path = tmp_path / "pkg" / "mod.py"
    text = "import os\nimport sys\n\nprint(sys.argv)\n"
    result = review(StubEngine([json.dumps(_answer())]), "m", text, language="python", origin=DocumentOrigin(path))
    assert [(f.line, f.rules) for f in result.findings] == [(0, ("ruff:F401",))]
    assert DocumentOrigin(path).analyzed_as() == ("pkg/mod.py", tmp_path)
    elsewhere = review(StubEngine([json.dumps(_answer())]), "m", "import os\nx = eval('1')\n", language="python")
    assert "bandit:B307" in {r for f in elsewhere.findings for r in f.rules}  # no settings: the defaults


@needs_analyzers
def test_a_notebook_cell_is_not_blamed_for_names_from_other_cells_or_for_magics():
    cell = "%matplotlib inline\nimport os\n\ndf.plot()\n!ls\n"
    origin = DocumentOrigin(Path("work/analysis.ipynb"), notebook_cell=True)
    result = review(StubEngine([json.dumps(_answer())]), "cell", cell, language="python", origin=origin)
    assert result.findings == [] and result.notes == []
    assert analyzable(cell.splitlines(), True)[::4] == ["# %matplotlib inline", "# !ls"]


def test_a_missing_analyzer_is_noted_and_the_review_goes_on(monkeypatch):
    monkeypatch.setattr(analyzers, "executable", lambda name: None)
    answer = _answer((SQL_LINE + 1, "db.execute(", "error", "security", "SQL injection.", None))
    result = review(StubEngine([json.dumps(answer)]), "flask", FLASK, language="python")
    assert result.analyzers == [] and len(result.notes) == 2 and all("not installed" in n for n in result.notes)
    assert [(f.line, f.replacement) for f in result.findings] == [(SQL_LINE, PARAMETERIZED)]


def test_other_languages_are_reviewed_by_the_model_alone():
    js = "const q = 'SELECT * FROM t WHERE a = ' + a;\ndb.query(q);\n"
    answer = _answer((1, "'SELECT * FROM t WHERE a = ' + a", "error", "security", "SQL built from input.", None))
    result = review(StubEngine([json.dumps(answer)]), "js", js, language="javascript")
    assert [(f.line, f.rules) for f in result.findings] == [(0, ())] and result.analyzers == []


def test_a_selection_is_reviewed_alone():
    engine = StubEngine([json.dumps(_answer())])
    review(engine, "flask", FLASK, Span(6, 10), "python")
    assert "line numbers on the left):\n\n 7 | def user():\n" in engine.requests[0].prompt
    schema = engine.requests[0].params.json_schema["properties"]["findings"]["items"]["properties"]["line"]
    assert (schema["minimum"], schema["maximum"]) == (7, 11)


def test_spans_are_checked():
    with pytest.raises(InvalidRequestError, match="outside the document"):
        review(StubEngine([]), "k", "a\nb", Span(1, 2))


def test_findings_mark_the_code_of_their_line_or_the_end_of_a_blank_one():
    lines = ["def f():", "    return 1", "  "]
    f = editor_finding(ReviewFinding("m.py", 2, 2, "info", "style", "m"), lines, lines, "python")
    assert (f.line, f.start, f.end, f.original) == (1, 4, 12, "    return 1")
    blank = editor_finding(ReviewFinding("m.py", 3, 3, "info", "style", "m"), lines, lines, "python")
    assert (blank.start, blank.end) == (2, 2)


def test_finding_json_names_every_field():
    f = Finding(1, 0, 3, "info", "style", "m", None, "abc", ("ruff:F401",))
    assert f.as_json() == {"line": 1, "start": 0, "end": 3, "severity": "info", "category": "style", "message": "m",
                           "replacement": None, "rules": ["ruff:F401"]}


# -- following edits -------------------------------------------------------------------------------


def test_relocate_follows_inserted_lines_and_drops_edited_ones():
    found = [Finding(SQL_LINE, 4, 70, "error", "security", "injection", None, LINES[SQL_LINE], ("bandit:B608",)),
             Finding(8, 4, 30, "info", "style", "name the file", None, LINES[8])]
    moved = relocate(found, "import os\n\n" + FLASK)  # two lines inserted above
    assert sorted(f.line for f in moved) == [10, 11] and moved[0].rules == ("bandit:B608",)
    edited = FLASK.replace('sqlite3.connect("app.db")', 'sqlite3.connect(DB)')
    assert [f.message for f in relocate(found, edited)] == ["injection"]
    assert relocate(found, "") == []


# -- the real model ----------------------------------------------------------------------------------


def test_review_out_of_tokens_keeps_the_finished_findings(default_engine):
    result = review(default_engine, "cut", FLASK, options=ActionOptions(max_new_tokens=3))
    assert result.complete is False and result.findings == []


def test_review_with_the_real_model_is_schema_valid_and_grounded(default_engine):
    result = review(default_engine, "flask", FLASK, Span(6, 10), "python", ActionOptions(max_new_tokens=160))
    for f in result.findings:
        assert 6 <= f.line <= 10 and f.severity in ("error", "warning", "info")
        if f.replacement is not None:
            ast.parse("\n".join(LINES[: f.line] + [f.replacement] + LINES[f.line + 1 :]))
