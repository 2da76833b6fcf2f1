"""The form spec: the one document the renderers read, validated once (pydantic).

A spec is JSON::

    {"title": "设备维修记录", "entity": "repair_record",
     "fields": [{"name": "repair_date", "label": "日期", "type": "date", "required": true},
                {"name": "fault_type", "label": "故障类型", "type": "choice", "required": true,
                 "choices": ["电气", "机械", "其他"]}]}

Field keys: `name` (a safe code identifier, see identifiers.py), `label` (shown to users,
in their language), `type` (one of FIELD_TYPES), `required`, `unique`, `choices` (choice
fields only: the allowed values, as shown and as stored), `min`/`max` (integer and
decimal fields), `min_length`/`max_length` (text, long_text, email and phone fields), and
`help` (an optional hint shown under the input). Text-like fields without `max_length`
get a default one, so every column is bounded; validating a spec twice gives the same spec.

`FormSpec.model_validate` is strict: an unsafe or clashing name is an error. `load_spec`
first repairs names (identifiers.py) and reports what it changed, for specs written by a
model or by hand. `spec_json_schema()` is the JSON schema of a valid spec (docs/scaffold.md).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from loopcoder.engine.errors import InvalidRequestError

from .identifiers import MAX_LENGTH, is_safe, safe_identifier, unique_names

FIELD_TYPES = ("text", "long_text", "integer", "decimal", "date", "datetime", "choice", "boolean", "email", "phone")
FieldType = Literal["text", "long_text", "integer", "decimal", "date", "datetime", "choice", "boolean", "email", "phone"]
NUMERIC_TYPES = frozenset({"integer", "decimal"})
TEXT_TYPES = frozenset({"text", "long_text", "email", "phone"})
DEFAULT_MAX_LENGTH = {"text": 200, "long_text": 5000, "email": 254, "phone": 20}
MAX_FIELDS = 60
MAX_CHOICES = 50
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class SpecError(InvalidRequestError):
    """A form spec is not valid; the message names each bad field and why."""


def _plain_text(value: str, what: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError(f"{what} must not be empty")
    if _CONTROL.search(value):
        raise ValueError(f"{what} must be one line of text without control characters")
    return value


class FormField(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="code identifier: ASCII snake_case, not a keyword, unique in the form")
    label: str = Field(max_length=80, description="what the user sees, in the user's language")
    type: FieldType
    required: bool = False
    unique: bool = False
    choices: list[str] | None = Field(default=None, description="choice fields only: the allowed values")
    min: int | float | None = Field(default=None, description="integer and decimal fields: the smallest value allowed")
    max: int | float | None = Field(default=None, description="integer and decimal fields: the largest value allowed")
    min_length: int | None = Field(default=None, ge=0, description="text-like fields: the fewest characters")
    max_length: int | None = Field(default=None, ge=1, le=100_000, description="text-like fields: the most characters")
    help: str | None = Field(default=None, max_length=200, description="a hint shown under the input")

    @field_validator("name")
    @classmethod
    def _safe_name(cls, name: str) -> str:
        if not is_safe(name):
            raise ValueError(f"{name!r} is not a safe identifier: use ASCII snake_case (a-z, 0-9, _), starting with a "
                             f"letter, at most {MAX_LENGTH} characters, not a Python or SQL keyword nor id/metadata")
        return name

    @field_validator("label")
    @classmethod
    def _label(cls, label: str) -> str:
        return _plain_text(label, "label")

    @field_validator("help")
    @classmethod
    def _help(cls, help: str | None) -> str | None:
        return None if help is None or not help.strip() else _plain_text(help, "help")

    @field_validator("choices")
    @classmethod
    def _choices(cls, choices: list[str] | None) -> list[str] | None:
        if choices is None:
            return None
        cleaned = [_plain_text(c, "each choice") for c in choices]
        if any(len(c) > 100 for c in cleaned):
            raise ValueError("each choice must be at most 100 characters")
        duplicates = sorted({c for c in cleaned if cleaned.count(c) > 1})
        if duplicates:
            raise ValueError(f"choices must be distinct; repeated: {', '.join(duplicates)}")
        if len(cleaned) > MAX_CHOICES:
            raise ValueError(f"at most {MAX_CHOICES} choices")
        return cleaned

    @model_validator(mode="after")
    def _consistent(self) -> "FormField":
        t = self.type
        if t == "choice" and not self.choices:
            raise ValueError("a choice field needs `choices`, a non-empty list of the allowed values")
        if t != "choice" and self.choices is not None:
            raise ValueError(f"`choices` is only for choice fields, not {t}")
        if t not in NUMERIC_TYPES and (self.min is not None or self.max is not None):
            raise ValueError(f"`min`/`max` are only for integer and decimal fields, not {t}")
        if t not in TEXT_TYPES and (self.min_length is not None or self.max_length is not None):
            raise ValueError(f"`min_length`/`max_length` are only for text, long_text, email and phone fields, not {t}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min:g}) is greater than max ({self.max:g})")
        if t == "integer" and any(v is not None and v != int(v) for v in (self.min, self.max)):
            raise ValueError("an integer field's min and max must be whole numbers")
        if t in TEXT_TYPES and self.max_length is None:
            self.max_length = max(DEFAULT_MAX_LENGTH[t], self.min_length or 0)
        if self.min_length is not None and self.max_length is not None and self.min_length > self.max_length:
            raise ValueError(f"min_length ({self.min_length}) is greater than max_length ({self.max_length})")
        if t == "email" and self.max_length is not None and self.max_length < 6:
            raise ValueError("an email field's max_length must be at least 6 (a@b.cd)")
        if t == "phone" and self.max_length is not None and self.max_length < 5:
            raise ValueError("a phone field's max_length must be at least 5")
        if t == "boolean" and self.unique:
            raise ValueError("a boolean field cannot be unique: only two records could exist")
        return self


class FormSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str = Field(max_length=80, description="the form's title, in the user's language")
    entity: str = Field(default="record", description="code identifier of one record: the table's name")
    fields: list[FormField] = Field(min_length=1, max_length=MAX_FIELDS)

    @field_validator("title")
    @classmethod
    def _title(cls, title: str) -> str:
        return _plain_text(title, "title")

    @field_validator("entity")
    @classmethod
    def _entity(cls, entity: str) -> str:
        if not is_safe(entity):
            raise ValueError(f"{entity!r} is not a safe identifier: use ASCII snake_case starting with a letter")
        return entity

    @model_validator(mode="after")
    def _distinct_names(self) -> "FormSpec":
        names = [f.name for f in self.fields]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"field names must be distinct; repeated: {', '.join(repeated)}")
        return self

    def as_json(self) -> dict[str, Any]:
        """The spec as plain JSON, without unset optional keys."""
        return self.model_dump(mode="json", exclude_none=True)


def spec_json_schema() -> dict[str, Any]:
    """The JSON schema of a valid spec (names' safety and cross-field rules are checked by FormSpec only)."""
    return FormSpec.model_json_schema()


@dataclass(frozen=True)
class LoadedSpec:
    spec: FormSpec
    repairs: list[str]  # one line per name changed, e.g. "field 2: 'class' -> 'class_field'"


def load_spec(data: Any) -> LoadedSpec:
    """A validated spec from JSON data (a dict or a JSON string), names repaired first; SpecError otherwise."""
    if isinstance(data, (str, bytes)):
        try:
            data = json.loads(data)
        except json.JSONDecodeError as e:
            raise SpecError(f"the form spec is not JSON: {e}") from None
    if not isinstance(data, dict):
        raise SpecError(f"a form spec is a JSON object with `title` and `fields`, not {type(data).__name__}")
    data, repairs = repair_names(data)
    try:
        return LoadedSpec(FormSpec.model_validate(data), repairs)
    except ValidationError as e:
        raise SpecError(describe_errors(e, data)) from None


def repair_names(data: dict) -> tuple[dict, list[str]]:
    """A copy of spec data with every field's `name` (and `entity`) safe and distinct; a missing
    name is derived from the label. Non-dict fields are left for validation to reject."""
    data = dict(data)
    repairs: list[str] = []
    fields = data.get("fields")
    if isinstance(fields, list):
        fields = [dict(f) if isinstance(f, dict) else f for f in fields]
        wanted: list[str] = []
        for i, f in enumerate(fields, 1):
            if not isinstance(f, dict):
                wanted.append(f"field_{i}")
                continue
            name, label = f.get("name"), f.get("label")
            name = name if isinstance(name, str) else ""
            wanted.append(name if is_safe(name) else safe_identifier(name, label if isinstance(label, str) else "", i))
        for i, (f, name) in enumerate(zip(fields, unique_names(wanted)), 1):
            if isinstance(f, dict) and f.get("name") != name:
                repairs.append(f"field {i}: {f.get('name', '(no name)')!r} -> {name!r}")
                f["name"] = name
        data["fields"] = fields
    entity = data.get("entity", "record")
    if not isinstance(entity, str) or not is_safe(entity):
        title = data.get("title") if isinstance(data.get("title"), str) else ""
        safe = safe_identifier(entity if isinstance(entity, str) else "", "", 0)
        safe = "record" if safe == "field_0" else safe
        repairs.append(f"entity: {entity!r} -> {safe!r}" + (f" (title {title!r})" if title else ""))
        data["entity"] = safe
    return data, repairs


def describe_errors(error: ValidationError, data: dict) -> str:
    """pydantic's errors as one message that names each field by position and name."""
    fields = data.get("fields") if isinstance(data.get("fields"), list) else []
    lines = []
    for e in error.errors():
        loc = e["loc"]
        where = "spec"
        if len(loc) >= 2 and loc[0] == "fields" and isinstance(loc[1], int):
            f = fields[loc[1]] if loc[1] < len(fields) else None
            name = f.get("name") if isinstance(f, dict) else None
            where = f"field {loc[1] + 1}" + (f" ({name})" if name else "")
            loc = loc[2:]
        elif loc:
            where = f"spec.{loc[0]}"
            loc = loc[1:]
        key = ".".join(str(part) for part in loc if not str(part).startswith(("function-after", "literal")))
        message = e["msg"].removeprefix("Value error, ")
        if e["type"] == "literal_error" and key == "type":
            message = f"unknown type {e.get('input')!r}; use one of {', '.join(FIELD_TYPES)}"
        lines.append(f"{where}{'.' + key if key else ''}: {message}")
    return "invalid form spec: " + "; ".join(lines)
