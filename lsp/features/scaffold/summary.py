"""A form spec as lines of text for a person to confirm before the app is written.

Every client (VS Code, Neovim, JupyterLab) shows these same lines, so the wording lives
here, editor-neutral::

    设备维修记录 (table repair_record), 5 fields
    日期 (repair_date): date, required
    故障类型 (fault_type): choice: 电气故障 | 机械故障 | 其他, required

The first line is the form; then one line per field, in order: its label, its code name,
its type (a choice field with its values), then what constrains it (required, unique,
a range, a length that differs from the type's default) and its help text.
"""

from __future__ import annotations

from .spec import DEFAULT_MAX_LENGTH, FormField, FormSpec


def spec_summary(spec: FormSpec) -> list[str]:
    """The form's title line, then one line per field."""
    count = len(spec.fields)
    lines = [f"{spec.title} (table {spec.entity}), {count} field{'' if count == 1 else 's'}"]
    lines += [field_summary(f) for f in spec.fields]
    return lines


def field_summary(field: FormField) -> str:
    line = f"{field.label} ({field.name}): {field_rules(field)}"
    if field.help:
        line += f" — {field.help}"
    return line


def field_rules(field: FormField, say_optional: bool = False) -> str:
    """The field's type and constraints: `choice: a | b, required, unique`; `optional` said too
    when `say_optional` (a diff shows required -> optional)."""
    kind = field.type
    if kind == "choice" and field.choices:
        kind = "choice: " + " | ".join(field.choices)
    parts = [kind]
    if field.required or say_optional:
        parts.append("required" if field.required else "optional")
    if field.unique:
        parts.append("unique")
    if field.min is not None or field.max is not None:
        parts.append(_bounds(field.min, field.max, ""))
    # Every text-like field has a max_length; the type's default one is no constraint anyone set.
    if field.min_length is not None or field.max_length != DEFAULT_MAX_LENGTH.get(field.type):
        parts.append(_bounds(field.min_length, field.max_length, " characters"))
    return ", ".join(parts)


def _bounds(low: float | None, high: float | None, unit: str) -> str:
    if low is not None and high is not None:
        return f"{low:g} to {high:g}{unit}"
    if low is not None:
        return f"at least {low:g}{unit}"
    return f"at most {high:g}{unit}"
