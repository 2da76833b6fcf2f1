"""A valid and an invalid record for a spec, as JSON values: the generated app's tests post them.

The valid record satisfies every rule of the spec (bounds, lengths, patterns, choices); the
invalid one breaks a rule in every field, so a 422 must name every field.
"""

from __future__ import annotations

from typing import Any

from .spec import FormField, FormSpec


def _fit(text: str, min_length: int | None, max_length: int | None, pad: str = "x") -> str:
    text = text + pad * max(0, (min_length or 0) - len(text))
    return text[:max_length] if max_length is not None else text


def _clamp(value: float, f: FormField) -> float:
    if f.min is not None:
        value = max(value, f.min)
    if f.max is not None:
        value = min(value, f.max)
    return value


def valid_value(f: FormField) -> Any:
    t = f.type
    if t == "text":
        return _fit("Sample text", f.min_length, f.max_length)
    if t == "long_text":
        return _fit("A longer sample text.\nWith a second line.", f.min_length, f.max_length)
    if t == "integer":
        return int(_clamp(7, f))
    if t == "decimal":
        return float(_clamp(12.5, f))
    if t == "date":
        return "2024-05-01"
    if t == "datetime":
        return "2024-05-01T09:30:00"
    if t == "choice":
        return (f.choices or [""])[0]
    if t == "boolean":
        return True
    if t == "email":
        usual = "user@example.com"
        if (f.min_length or 0) <= len(usual) <= (f.max_length or len(usual)):
            return usual
        return "a" * (max(f.min_length or 0, 6) - 5) + "@b.cd"
    if t == "phone":
        usual = "+1 555 0100"
        if (f.min_length or 0) <= len(usual) <= (f.max_length or len(usual)):
            return usual
        return "5" * max(f.min_length or 0, 5)
    raise ValueError(f"no sample for field type {t!r}")


def invalid_value(f: FormField) -> Any:
    t = f.type
    if t in ("text", "long_text"):
        return "x" * ((f.max_length or 0) + 1)
    return {"integer": "twelve", "decimal": "twelve and a half", "date": "2024-13-45", "datetime": "not a time",
            "choice": "\u2060not one of the choices", "boolean": "maybe", "email": "not-an-email",
            "phone": "call me"}[t]


def valid_record(spec: FormSpec) -> dict[str, Any]:
    return {f.name: valid_value(f) for f in spec.fields}


def invalid_record(spec: FormSpec) -> dict[str, Any]:
    return {f.name: invalid_value(f) for f in spec.fields}
