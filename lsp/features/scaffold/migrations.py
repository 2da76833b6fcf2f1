"""An app's database migrations: one Alembic revision per version of its spec (docs/scaffold.md,
"Changing an app").

Revision 0001 creates the table. Each later revision turns the table of the spec before it
into the table of its own spec, in two batch steps, which SQLite runs by building a new
table and copying every record into it:

    1. the columns: dropped, altered (type, length, nullable) and added
    2. the rules: every CHECK and UNIQUE constraint of the new spec, by name (ck_/uq_<table>_<column>)

A field keeps its column name for life: a change of label is a change of comment, so no
value ever moves between columns. The app runs every pending revision in one transaction
(models.py), after copying an SQLite file aside, so a failed migration leaves the database
as it was.

The revision files are a pure function of the manifest's history: rendering the same
history again gives the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .columns import Column
from .spec import FormSpec

VERSIONS = "migrations/versions"


@dataclass(frozen=True)
class Revision:
    """One version of the app's spec, and the words that asked for it (None for the first)."""

    id: str  # "0001", "0002", ...
    spec: FormSpec
    change: str | None = None

    @property
    def path(self) -> str:
        return f"{VERSIONS}/{self.id}.py"

    def as_json(self) -> dict[str, Any]:
        return {"revision": self.id, "change": self.change, "spec": self.spec.as_json()}


def revision_id(number: int) -> str:
    return f"{number:04d}"


def first_history(spec: FormSpec) -> list[Revision]:
    return [Revision(revision_id(1), spec)]


def column_code(column: Column, nullable: bool | None = None) -> str:
    """`sa.Column(...)` for a field, as the migrations and the model spell it."""
    nullable = column.nullable if nullable is None else nullable
    return f"sa.Column({column.name!r}, sa.{column.sa_type}, nullable={nullable}, comment={column.label!r})"


def _columns_literal(spec: FormSpec) -> str:
    """The spec's columns as the Python list a migration builds its table from."""
    lines = [f"    {column_code(Column(f))}," for f in spec.fields]
    return "[\n" + "\n".join(lines) + "\n]"


def _constraints(spec: FormSpec) -> list[tuple[str, str, str]]:
    """Every rule of the spec as (kind, name, argument): ("check", ck_..., SQL) or ("unique", uq_..., column)."""
    found = []
    for column in (Column(f) for f in spec.fields):
        if column.rule is not None:
            found.append(("check", column.check_name(spec.entity), column.rule))
        if column.field.unique:
            found.append(("unique", column.unique_name(spec.entity), column.name))
    return found


def _rules(spec: FormSpec) -> list[str]:
    """The batch operations that create every rule of the spec."""
    return [f"batch.create_check_constraint({name!r}, {arg!r})" if kind == "check" else
            f"batch.create_unique_constraint({name!r}, [{arg!r}])" for kind, name, arg in _constraints(spec)]


def _column_ops(before: FormSpec, after: FormSpec, added_nullable: bool = False) -> list[str]:
    """The batch operations that turn `before`'s columns into `after`'s, matched by name; added
    columns are nullable when `added_nullable` (a downgrade's)."""
    old = {f.name: Column(f) for f in before.fields}
    new = {f.name: Column(f) for f in after.fields}
    ops = [f"batch.drop_column({name!r})" for name in old if name not in new]
    for name, column in new.items():
        was = old.get(name)
        if was is None:
            continue
        changes = []
        if was.sa_type != column.sa_type:
            changes.append(f"type_=sa.{column.sa_type}")
        if was.nullable != column.nullable:
            changes.append(f"nullable={column.nullable}")
        if was.label != column.label:
            changes.append(f"comment={column.label!r}")
        if changes:
            ops.append(f"batch.alter_column({name!r}, existing_type=sa.{was.sa_type}, "
                       f"existing_nullable={was.nullable}, {', '.join(changes)})")
    ops += [f"batch.add_column({column_code(column, True if added_nullable else None)})"
            for name, column in new.items() if name not in old]
    return ops


def render_revision(revision: Revision, before: Revision | None) -> str:
    """The text of migrations/versions/<id>.py."""
    spec = revision.spec
    header = [f'"""{_docstring(revision, before)}"""', "",
              "from __future__ import annotations", "", "import sqlalchemy as sa", "from alembic import op", "",
              f"revision = {revision.id!r}", f"down_revision = {before.id if before else None!r}",
              "branch_labels = None", "depends_on = None", f"TABLE = {spec.entity!r}", ""]
    if before is None:
        body = _create(spec)
    else:
        body = _change(before.spec, spec)
    return "\n".join(header + body) + "\n"


def _docstring(revision: Revision, before: Revision | None) -> str:
    if before is None:
        what = f"Revision {revision.id}: create the {revision.spec.entity} table ({revision.spec.title})."
    else:
        what = f"Revision {revision.id}: {revision.change or 'a new spec'}"
    return (what.replace("\\", "\\\\").replace('"', "'")
            + "\n\nGenerated by `loopcoder scaffold` from loopcoder-scaffold.json; the app runs it when it starts.\n")


def _create(spec: FormSpec) -> list[str]:
    rules = [f"        sa.CheckConstraint({arg!r}, name={name!r})," if kind == "check" else
             f"        sa.UniqueConstraint({arg!r}, name={name!r})," for kind, name, arg in _constraints(spec)]
    columns = [f"        {column_code(Column(f))}," for f in spec.fields]
    return ["", "def upgrade() -> None:", "    op.create_table(", "        TABLE,",
            "        sa.Column('id', sa.Integer(), primary_key=True, autoincrement=True),",
            *columns, *rules, "        sqlite_autoincrement=True,", "    )", "", "",
            "def downgrade() -> None:", "    op.drop_table(TABLE)"]


def _change(before: FormSpec, after: FormSpec) -> list[str]:
    # A downgrade brings a dropped column back empty (its values are in the backup file), so it
    # cannot be NOT NULL there, whatever the older spec said.
    restored = tuple(f.name for f in before.fields if f.name not in {g.name for g in after.fields})
    lines = [f"BEFORE = {_columns_literal(before)}", f"AFTER = {_columns_literal(after)}", "", "",
             "def _table(columns: list[sa.Column], nullable: tuple[str, ...] = ()) -> sa.Table:",
             '    """A table with these columns (those named in `nullable` made so) and no rules: what a batch step',
             '    starts from."""',
             "    return sa.Table(TABLE, sa.MetaData(), sa.Column('id', sa.Integer(), primary_key=True, autoincrement=True),",
             "                    *(sa.Column(c.name, c.type, nullable=c.nullable or c.name in nullable, comment=c.comment)",
             "                      for c in columns), sqlite_autoincrement=True)", "", ""]
    lines += _direction("upgrade", _column_ops(before, after), "_table(BEFORE)", "_table(AFTER)", _rules(after))
    lines += ["", ""]
    end = f"_table(BEFORE, nullable={restored!r})" if restored else "_table(BEFORE)"
    lines += _direction("downgrade", _column_ops(after, before, added_nullable=True), "_table(AFTER)", end,
                        _rules(before))
    return lines


def _direction(name: str, column_ops: list[str], start: str, end: str, rules: list[str]) -> list[str]:
    lines = [f"def {name}() -> None:"]
    if column_ops:
        lines.append("    # 1. the columns; every record is copied into the new table")
        lines.append(f"    with op.batch_alter_table(TABLE, recreate='always', copy_from={start}) as batch:")
        lines += [f"        {op}" for op in column_ops]
    lines.append("    # 2. the rules, each column's CHECK and UNIQUE constraints, by name")
    lines.append(f"    with op.batch_alter_table(TABLE, recreate='always', copy_from={end}) as batch:")
    lines += [f"        {op}" for op in rules] or ["        pass"]
    return lines


def load_history(manifest: dict[str, Any], spec: FormSpec) -> list[Revision]:
    """The history a manifest records, continued with `spec` (its "spec", which a user may have
    edited by hand) when that differs from the last; for an app written before migrations
    existed, `spec` as revision 0001."""
    from .spec import SpecError, load_spec

    entries = manifest.get("history")
    if entries is None:
        return first_history(spec)
    if not isinstance(entries, list) or not entries:
        raise SpecError("the manifest's \"history\" must be a non-empty list of {revision, change, spec}")
    history = []
    for number, entry in enumerate(entries, 1):
        if not isinstance(entry, dict) or entry.get("revision") != revision_id(number):
            raise SpecError(f"the manifest's history entry {number} must be an object with \"revision\": "
                            f"{revision_id(number)!r}")
        change = entry.get("change")
        history.append(Revision(revision_id(number), load_spec(entry.get("spec")).spec,
                                change if isinstance(change, str) else None))
    return continue_history(history, spec, None)


def continue_history(history: list[Revision], spec: FormSpec, change: str | None) -> list[Revision]:
    """`history` with `spec` as its next revision (the same history when `spec` is its last)."""
    if history[-1].spec == spec:
        return history
    return [*history, Revision(revision_id(len(history) + 1), spec, change)]


def render_migrations(history: list[Revision]) -> dict[str, str]:
    """Every revision file of a history, by relative path."""
    files = {}
    for i, revision in enumerate(history):
        files[revision.path] = render_revision(revision, history[i - 1] if i else None)
    return files
