"""Will the records an app already holds survive a new spec? Read before anything is written.

`check_records` opens the app's SQLite file read-only (the standard sqlite3 module: loopcoder
needs neither SQLAlchemy nor Alembic for this) and, for every field the new spec adds or
changes, checks each stored value against the new field as the migration and the app will
hold it:

- a loss: a removed field that records have values for. Allowed with --force (the app's
  backup file keeps them).
- a problem: a value the new table would refuse or the app could not read back: a required
  field with records that have no value, a value outside the new choices, range or length,
  a duplicate where the field becomes unique, text that is not a number or a date where the
  type becomes one. Never forced: the records must be edited first, and the message says which.

Values are checked as SQLAlchemy stores them in SQLite: dates as 2026-12-07, date-times as
2026-12-07 10:30:00.000000, booleans as 0 and 1.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from loopcoder.engine.errors import InvalidRequestError

from .columns import EMAIL_PATTERN, PHONE_PATTERN
from .spec import FormField, FormSpec

DATABASE = "records.db"
SHOWN_IDS = 5
_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?")
_INTEGER = re.compile(r"[+-]?\d+")


@dataclass(frozen=True)
class RecordCheck:
    records: int  # how many the table holds (0 without a database)
    losses: tuple[str, ...]  # values a removed field would take with it
    problems: tuple[str, ...]  # values the new spec cannot hold


def _ids(ids: list[int]) -> str:
    shown = ", ".join(str(i) for i in ids[:SHOWN_IDS])
    return f"record{'s' if len(ids) > 1 else ''} {shown}" + (f" and {len(ids) - SHOWN_IDS} more" if len(ids) > SHOWN_IDS else "")


def value_problem(f: FormField, value: Any) -> str | None:
    """Why the stored `value` cannot be a value of `f` ("not a number"), or None when it can (None
    values are checked elsewhere)."""
    t = f.type
    if t in ("integer", "decimal"):
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            return "not a number"
        if isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                return "not a number"
            if t == "integer" and not _INTEGER.fullmatch(value.strip()):
                return "not a whole number"
        else:
            number = float(value)
            if t == "integer" and not number.is_integer():
                return "not a whole number"
        if f.min is not None and number < f.min:
            return f"below {f.min:g}"
        if f.max is not None and number > f.max:
            return f"above {f.max:g}"
        return None
    if t == "boolean":
        return None if value in (0, 1, "0", "1") else "not yes or no"
    text = value if isinstance(value, str) else str(value)
    if t == "date":
        try:
            date.fromisoformat(text)
        except ValueError:
            return "not a date (YYYY-MM-DD)"
        return None
    if t == "datetime":
        return None if _DATETIME.fullmatch(text) else "not a date and time"
    if t == "choice" and text not in (f.choices or []):
        return f"not one of {', '.join(f.choices or [])}"
    if f.max_length is not None and len(text) > f.max_length:
        return f"longer than {f.max_length} characters"
    if f.min_length is not None and len(text) < f.min_length:
        return f"shorter than {f.min_length} characters"
    pattern = {"email": EMAIL_PATTERN, "phone": PHONE_PATTERN}.get(t)
    if pattern is not None and not re.fullmatch(pattern, text):
        return "not an email address" if t == "email" else "not a phone number"
    return None


def check_records(database: Path, before: FormSpec, after: FormSpec) -> RecordCheck:
    """What becomes of the records in `database` (an SQLite file, maybe missing) when `before` becomes `after`."""
    if not database.is_file():
        return RecordCheck(0, (), ())
    try:
        connection = sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as e:
        raise InvalidRequestError(f"cannot read {database}: {e}") from None
    try:
        return _check(connection, database, before, after)
    except sqlite3.DatabaseError as e:
        raise InvalidRequestError(f"cannot read {database}: {e}") from None
    finally:
        connection.close()


def _check(connection: sqlite3.Connection, database: Path, before: FormSpec, after: FormSpec) -> RecordCheck:
    table = before.entity
    if connection.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone() is None:
        return RecordCheck(0, (), ())
    present = {row[1] for row in connection.execute(f'PRAGMA table_info("{table}")')}
    missing = [f.name for f in before.fields if f.name not in present]
    if missing:
        raise InvalidRequestError(f"{database}: the {table} table has no column {', '.join(missing)}, which the app's "
                                  "spec has: the database does not belong to this version of the app")
    columns = [f.name for f in before.fields]
    rows = connection.execute(f'SELECT id, {", ".join(columns)} FROM "{table}" ORDER BY id').fetchall()
    old = {f.name: f for f in before.fields}
    losses, problems = [], []
    for name, f in old.items():
        if name not in {g.name for g in after.fields}:
            having = [row[0] for row in rows if row[1 + columns.index(name)] is not None]
            if having:
                losses.append(f"{f.label} ({name}): {_ids(having)} have a value; removing the field loses "
                              f"{'it' if len(having) == 1 else 'them'}")
    for f in after.fields:
        was = old.get(f.name)
        if was == f or (was is not None and was.model_copy(update={"label": f.label, "help": f.help}) == f):
            continue  # unchanged rules: the values already fit
        values = [(row[0], row[1 + columns.index(f.name)] if was is not None else None) for row in rows]
        empty = [i for i, v in values if v is None or (isinstance(v, str) and not v.strip() and f.required)]
        if f.required and empty:
            why = "it is new" if was is None else "they have none"
            problems.append(f"{f.label} ({f.name}) would be required, but {_ids(empty)} have no value ({why}): "
                            + ("add it as optional, fill it in, then make it required" if was is None
                               else "fill them in first, or keep it optional"))
        bad: dict[str, list[tuple[int, Any]]] = {}
        for i, v in values:
            why = value_problem(f, v) if v is not None else None
            if why is not None:
                bad.setdefault(why, []).append((i, v))
        for why, found in bad.items():
            shown = ", ".join(repr(v) for _, v in found[:3]) + (", …" if len(found) > 3 else "")
            problems.append(f"{f.label} ({f.name}): {_ids([i for i, _ in found])} ({shown}): {why}")
        if f.unique:
            seen: dict[Any, list[int]] = {}
            for i, v in values:
                if v is not None:
                    seen.setdefault(v, []).append(i)
            for v, ids in seen.items():
                if len(ids) > 1:
                    problems.append(f"{f.label} ({f.name}) would be unique, but {_ids(ids)} share {v!r}")
    return RecordCheck(len(rows), tuple(losses), tuple(problems))
