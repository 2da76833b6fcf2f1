"""One spec field as each generated file spells it: SQL, SQLAlchemy, pydantic and HTML.

The renderers' templates only place these strings; every per-type decision lives here,
so the database, the server-side validation and the form's client-side validation are
derived from the same field in one place and cannot drift apart. Strings that came from
the user (labels, choices) are written as Python literals with `repr` and as SQL
literals with quotes doubled; the HTML template escapes them itself.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from .spec import FormField

# Checked by the server (pydantic, Python `re`) and the browser (the `pattern` attribute,
# a JavaScript regex in `v` mode, where `-`, `(` and `)` in a class must be escaped).
EMAIL_PATTERN = r"[^@\s]+@[^@\s]+\.[^@\s]+"
PHONE_PATTERN = r"\+?\(?[0-9][0-9 \-\(\)]{4,}"

_PY_TYPES = {"text": "str", "long_text": "str", "integer": "int", "decimal": "float", "date": "date",
             "datetime": "datetime", "boolean": "bool", "email": "str", "phone": "str"}
_SA_TYPES = {"long_text": "Text", "integer": "Integer", "decimal": "Float", "date": "Date", "datetime": "DateTime",
             "boolean": "Boolean"}
_SQL_TYPES = {"long_text": "TEXT", "integer": "INTEGER", "decimal": "REAL", "date": "DATE", "datetime": "DATETIME",
              "boolean": "BOOLEAN"}
_INPUT_TYPES = {"text": "text", "integer": "number", "decimal": "number", "date": "date", "datetime": "datetime-local",
                "email": "email", "phone": "tel"}


def sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def constraint_name(kind: str, entity: str, column: str) -> str:
    """`ck_<table>_<column>` or `uq_<table>_<column>`, shortened with a hash past PostgreSQL's 63 characters."""
    name = f"{kind}_{entity}_{column}"
    if len(name) <= 63:
        return name
    return f"{name[:54]}_{hashlib.sha1(name.encode()).hexdigest()[:8]}"


def _number(value: float | int) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


@dataclass(frozen=True)
class Column:
    field: FormField

    @property
    def name(self) -> str:
        return self.field.name

    @property
    def label(self) -> str:
        return self.field.label

    # -- SQL and SQLAlchemy -------------------------------------------------------------

    def _string_length(self) -> int:
        f = self.field
        if f.type == "choice":
            return max(len(c) for c in f.choices or [""])
        return f.max_length or 0

    @property
    def sql_type(self) -> str:
        if self.field.type in _SQL_TYPES:
            return _SQL_TYPES[self.field.type]
        return f"VARCHAR({self._string_length()})"

    @property
    def sa_type(self) -> str:
        if self.field.type in _SA_TYPES:
            return _SA_TYPES[self.field.type]
        return f"String({self._string_length()})"

    def checks(self) -> list[str]:
        """SQL CHECK expressions on this column (the database refuses what the form would)."""
        f, n = self.field, self.field.name
        checks = []
        if f.type == "choice":
            checks.append(f"{n} IN ({', '.join(sql_literal(c) for c in f.choices or [])})")
        if f.min is not None:
            checks.append(f"{n} >= {_number(f.min)}")
        if f.max is not None:
            checks.append(f"{n} <= {_number(f.max)}")
        if f.max_length is not None:
            checks.append(f"length({n}) <= {f.max_length}")
        return checks

    @property
    def rule(self) -> str | None:
        """The column's CHECK expressions as one, or None: one named constraint per column, so a
        migration can drop and create a column's rules by name."""
        checks = self.checks()
        return " AND ".join(f"({c})" for c in checks) if len(checks) > 1 else (checks[0] if checks else None)

    def check_name(self, entity: str) -> str:
        return constraint_name("ck", entity, self.name)

    def unique_name(self, entity: str) -> str:
        return constraint_name("uq", entity, self.name)

    @property
    def nullable(self) -> bool:
        return not self.field.required

    # -- pydantic ---------------------------------------------------------------------------

    @property
    def py_type(self) -> str:
        f = self.field
        base = f"Literal[{', '.join(repr(c) for c in f.choices or [])}]" if f.type == "choice" else _PY_TYPES[f.type]
        return base if f.required else f"Optional[{base}]"

    @property
    def py_mapped_type(self) -> str:
        f = self.field
        base = "str" if f.type == "choice" else _PY_TYPES[f.type]
        return base if f.required else f"Optional[{base}]"

    @property
    def py_field_args(self) -> str:
        """Arguments of this field's pydantic `Field(...)`: the server-side validation."""
        f = self.field
        args = [] if f.required else ["default=None"]
        args.append(f"title={f.label!r}")
        if f.min is not None:
            args.append(f"ge={_number(f.min)}")
        if f.max is not None:
            args.append(f"le={_number(f.max)}")
        min_length = f.min_length if f.min_length is not None else (1 if f.required and f.type in ("text", "long_text") else None)
        if min_length is not None:
            args.append(f"min_length={min_length}")
        if f.max_length is not None:
            args.append(f"max_length={f.max_length}")
        pattern = {"email": EMAIL_PATTERN, "phone": PHONE_PATTERN}.get(f.type)
        if pattern is not None:
            args.append(f"pattern={'^' + pattern + '$'!r}")
        return ", ".join(args)

    # -- HTML ---------------------------------------------------------------------------------

    @property
    def control(self) -> str:
        """input, textarea, select or checkbox."""
        return {"long_text": "textarea", "choice": "select", "boolean": "checkbox"}.get(self.field.type, "input")

    @property
    def html_attributes(self) -> list[tuple[str, str | None]]:
        """The control's validation attributes, in order; a None value is a bare attribute (`required`)."""
        f = self.field
        attrs: list[tuple[str, str | None]] = []
        if f.type in _INPUT_TYPES:
            attrs.append(("type", _INPUT_TYPES[f.type]))
        if f.type == "integer":
            attrs.append(("step", "1"))
        if f.type == "decimal":
            attrs.append(("step", "any"))
        if f.type == "datetime":
            attrs.append(("step", "1"))  # seconds may be given
        if f.required and f.type != "boolean":  # a required checkbox would have to be ticked
            attrs.append(("required", None))
        if f.min is not None:
            attrs.append(("min", _number(f.min)))
        if f.max is not None:
            attrs.append(("max", _number(f.max)))
        min_length = f.min_length if f.min_length is not None else (1 if f.required and f.type in ("text", "long_text") else None)
        if min_length is not None:
            attrs.append(("minlength", str(min_length)))
        if f.max_length is not None:
            attrs.append(("maxlength", str(f.max_length)))
        if f.type == "email":
            attrs.append(("pattern", EMAIL_PATTERN))
        if f.type == "phone":
            attrs.append(("pattern", PHONE_PATTERN))
        return attrs
