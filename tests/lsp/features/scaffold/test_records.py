"""Stored values against a changed field (records.py), as SQLAlchemy keeps them in SQLite."""

import sqlite3

import pytest

from loopcoder.lsp.features.scaffold import FormField, load_spec
from loopcoder.lsp.features.scaffold.records import check_records, value_problem

from .specs import REPAIRS_ZH


@pytest.mark.parametrize("field, value, problem", [
    ({"type": "integer"}, "12", None),
    ({"type": "integer"}, 12.0, None),
    ({"type": "integer"}, "12.5", "not a whole number"),
    ({"type": "integer"}, "WX-1", "not a number"),
    ({"type": "integer", "min": 1, "max": 5}, 9, "above 5"),
    ({"type": "decimal", "min": 0}, "-0.5", "below 0"),
    ({"type": "decimal"}, True, "not a number"),
    ({"type": "date"}, "2026-12-07", None),
    ({"type": "date"}, "2026-12-07 10:00:00.000000", "not a date (YYYY-MM-DD)"),
    ({"type": "datetime"}, "2026-12-07 10:00:00.000000", None),
    ({"type": "datetime"}, "2026-12-07", "not a date and time"),
    ({"type": "boolean"}, 1, None),
    ({"type": "boolean"}, "yes", "not yes or no"),
    ({"type": "choice", "choices": ["a", "b"]}, "c", "not one of a, b"),
    ({"type": "text", "max_length": 3}, "abcd", "longer than 3 characters"),
    ({"type": "text"}, 42, None),
    ({"type": "email"}, "someone@example.org", None),
    ({"type": "email"}, "someone", "not an email address"),
    ({"type": "phone"}, "call me", "not a phone number"),
])
def test_value_problem(field, value, problem):
    assert value_problem(FormField(name="x", label="X", **field), value) == problem


def test_no_database_or_no_table_is_nothing_to_check(tmp_path):
    spec = load_spec(REPAIRS_ZH).spec
    assert check_records(tmp_path / "records.db", spec, spec).records == 0
    sqlite3.connect(tmp_path / "records.db").close()
    assert check_records(tmp_path / "records.db", spec, spec).records == 0


def test_a_database_of_another_app_is_named(tmp_path):
    with sqlite3.connect(tmp_path / "records.db") as db:
        db.execute("CREATE TABLE repair_record (id INTEGER PRIMARY KEY, other TEXT)")
    spec = load_spec(REPAIRS_ZH).spec
    with pytest.raises(Exception, match="has no column repair_date, code, fault_type, handler, notes"):
        check_records(tmp_path / "records.db", spec, spec)


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path):
    (tmp_path / "records.db").write_bytes(b"not a database at all" * 100)
    spec = load_spec(REPAIRS_ZH).spec
    with pytest.raises(Exception, match="cannot read .*records.db"):
        check_records(tmp_path / "records.db", spec, spec)
