"""Which fixes the editor offers: only one that replaces the finding's own line with an edit of
it, leaves a Python file parsing, and, for SQL built from strings, the parameterized query."""

import ast
from pathlib import Path

from loopcoder.lsp.features.findings import ReviewFinding
from loopcoder.lsp.features.quick_fixes import edits_its_line, parses, quick_fix

FLASK = (Path(__file__).parents[2] / "docs" / "examples" / "flask_app.py").read_text().splitlines()
SQL_LINE = 10  # 1-based
PARAMETERIZED = '    rows = db.execute("SELECT * FROM users WHERE name = ?", (name,)).fetchall()'


def _finding(line, replacement=None, category="style", end_line=None):
    return ReviewFinding("flask_app.py", line, end_line or line, "warning", category, "m", replacement)


def test_a_fix_that_does_not_parse_is_not_offered():
    assert quick_fix(FLASK, _finding(1, "sqlite3.connect(", "security"), "python") is None
    assert quick_fix(FLASK, _finding(9, '    db = sqlite3.connect("app.db"'), "python") is None


def test_a_fix_that_is_other_code_than_its_line_is_not_offered():
    assert quick_fix(FLASK, _finding(2, 'app = Flask(__name__)'), "python") is None  # parses, keeps nothing of it
    assert not edits_its_line("from flask import Flask, request", "sqlite3.connect(")
    assert edits_its_line("from flask import Flask, request", "from flask import Flask")
    assert edits_its_line(")", "]")  # a line without names can only be checked by parsing


def test_a_sound_fix_of_its_own_line_is_offered():
    fix = '    db = sqlite3.connect("app.db", timeout=5)'
    assert quick_fix(FLASK, _finding(9, fix), "python") == fix


def test_fixes_over_several_lines_and_deletions_are_not_quick_fixes():
    sorted_imports = "import sqlite3\n\nfrom flask import Flask, request"
    assert quick_fix(FLASK, _finding(1, sorted_imports, end_line=3), "python") is None
    assert quick_fix(FLASK, _finding(2, ""), "python") is None


def test_other_languages_skip_the_parse_check_but_not_the_line_check():
    js = ["const a = require('a')", "run(a"]
    assert quick_fix(js, _finding(2, "run(a, b"), "javascript") == "run(a, b"
    assert quick_fix(js, _finding(2, "other()"), "javascript") is None


def test_sql_built_from_strings_gets_the_parameterized_query():
    assert quick_fix(FLASK, _finding(SQL_LINE, None, "security"), "python") == PARAMETERIZED
    still_concatenated = '    rows = db.execute("SELECT * FROM users WHERE name = \'" + name.strip() + "\'").fetchall()'
    assert quick_fix(FLASK, _finding(SQL_LINE, still_concatenated, "security"), "python") == PARAMETERIZED
    fixed = FLASK[: SQL_LINE - 1] + [PARAMETERIZED] + FLASK[SQL_LINE:]
    ast.parse("\n".join(fixed))


def test_a_style_finding_on_the_query_line_keeps_its_own_fix():
    fix = '    rows = db.execute("SELECT * FROM users WHERE name = \'" + name + "\'").fetchmany(10)'
    assert quick_fix(FLASK, _finding(SQL_LINE, fix), "python") == fix


def test_parsing_is_python_s_own():
    assert parses("x = await fetch()")  # a notebook cell's top-level await parses (compiling is another matter)
    assert not parses("def f(:\n    pass") and not parses("x = 1\0")
