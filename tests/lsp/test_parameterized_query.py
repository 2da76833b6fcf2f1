"""The deterministic fix for SQL built from strings: `execute(<concatenation or f-string>)` becomes
`execute(<constant query>, (<values>,))`, with the driver's placeholder, or no fix at all."""

import ast

import pytest

from loopcoder.lsp.features.parameterized_query import parameterized

SQLITE = "import sqlite3\n\n"
PSYCOPG = "import psycopg2\n\n"


def _fix(body: str, header: str = SQLITE, line: int | None = None):
    text = header + body
    line = line or header.count("\n") + 1
    return parameterized(text, line, line)


def _only_line(fix) -> str:
    first, last, new = fix
    assert first == last
    return new


@pytest.mark.parametrize("body, expected", [
    ("rows = db.execute(\"SELECT * FROM users WHERE name = '\" + name + \"'\").fetchall()",
     'rows = db.execute("SELECT * FROM users WHERE name = ?", (name,)).fetchall()'),
    ("cur.execute(f\"SELECT id FROM orders WHERE customer = '{customer}' AND status = '{status}'\")",
     'cur.execute("SELECT id FROM orders WHERE customer = ? AND status = ?", (customer, status))'),
    ("return conn.execute(\"UPDATE users SET email = '\" + email + \"' WHERE id = \" + str(uid))",
     'return conn.execute("UPDATE users SET email = ? WHERE id = ?", (email, str(uid)))'),
    ("cur.execute(\"SELECT * FROM items WHERE owner = '%s' AND n > %d\" % (owner, n))",
     'cur.execute("SELECT * FROM items WHERE owner = ? AND n > ?", (owner, n))'),
    ("cur.execute('SELECT * FROM t WHERE a = ' + a)", "cur.execute('SELECT * FROM t WHERE a = ?', (a,))"),
    ("    self.db.execute(\"DELETE FROM t WHERE k = '\" + key['id'] + \"'\")  # tidy",
     "    self.db.execute(\"DELETE FROM t WHERE k = ?\", (key['id'],))  # tidy"),
])
def test_built_queries_become_parameterized(body, expected):
    header = SQLITE + ("def f(self, key):\n" if body.startswith("    ") else "")
    new = _only_line(_fix(body, header))
    assert new == expected
    ast.parse(header + new)


def test_the_placeholder_follows_the_driver_and_literal_percent_signs_are_escaped():
    new = _only_line(_fix("cur.execute(\"SELECT * FROM t WHERE a LIKE 'x%' AND b = '\" + b + \"'\")", PSYCOPG))
    assert new == "cur.execute(\"SELECT * FROM t WHERE a LIKE 'x%%' AND b = %s\", (b,))"


@pytest.mark.parametrize("body, header, why", [
    ("cur.execute(\"SELECT * FROM t WHERE a LIKE '%\" + q + \"%'\")", SQLITE, "the value sits inside a quoted pattern"),
    ("cur.execute(\"SELECT * FROM \" + table)", SQLITE, "a table name cannot be a parameter"),
    ("cur.execute(\"SELECT * FROM t ORDER BY \" + column)", SQLITE, "nor can a column to sort by"),
    ("cur.execute(query)", SQLITE, "the query is built on another line"),
    ("cur.execute(\"SELECT * FROM t WHERE a = '\" + a + \"'\", ())", SQLITE, "it has parameters already"),
    ("cur.execute(\"SELECT * FROM t WHERE a = '\" + a + \"'\")", "", "no driver imported: no known placeholder"),
    ("cur.execute(f\"SELECT * FROM t WHERE a = {a!r}\")", SQLITE, "a conversion changes the value"),
    ("cur.execute(\"SELECT 1\")", SQLITE, "nothing is built"),
    ("cur.executescript(\"DROP TABLE \" + t)", SQLITE, "executescript takes no parameters"),
    ("print(\"SELECT * FROM t WHERE a = '\" + a + \"'\")", SQLITE, "no execute call"),
])
def test_no_fix_where_a_parameter_would_be_wrong(body, header, why):
    assert _fix(body, header) is None, why


def test_only_a_call_on_the_finding_lines_is_rewritten():
    text = SQLITE + "a = 1\ncur.execute(\"SELECT * FROM t WHERE a = \" + a)\n"
    assert parameterized(text, 3, 3) is None
    assert parameterized(text, 4, 4) == (4, 4, 'cur.execute("SELECT * FROM t WHERE a = ?", (a,))')


def test_a_query_over_several_lines_is_rewritten_in_place():
    text = SQLITE + "cur.execute(\n    \"SELECT * FROM t WHERE a = '\" + a + \"'\"\n)\n"
    assert parameterized(text, 4, 4) == (4, 4, '    "SELECT * FROM t WHERE a = ?", (a,)')
    assert parameterized(text, 3, 5) == (4, 4, '    "SELECT * FROM t WHERE a = ?", (a,)')
    assert parameterized(text, 3, 3) is None  # the query is not on the finding's line


def test_a_file_that_does_not_parse_gets_no_fix():
    assert parameterized(SQLITE + "cur.execute(\"SELECT \" + a\n", 3, 3) is None


def test_non_ascii_text_before_the_query_keeps_its_place():
    new = _only_line(_fix("rows = db.execute(\"SELECT * FROM gäste WHERE name = '\" + name + \"'\")  # ü"))
    assert new == 'rows = db.execute("SELECT * FROM gäste WHERE name = ?", (name,))  # ü'
