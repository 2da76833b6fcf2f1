"""Reading a message's params strictly, and saying which field was wrong.

lsprotocol's converter (cattrs) coerces: `int(1.5)` is 1, `int("5")` is 5, `bool("false")` is
True. `strict_converter` refuses instead: an integer field takes a JSON integer (or a float
with no fraction, such as 3.0), a string field a string, a boolean field true or false.

When params do not fit, `describe` turns the converter's nested errors into one line per
field, named as on the wire: `params.position.character: expected an integer in 0..2147483647,
got 1.5`.
"""

from __future__ import annotations

import collections.abc
import json
import re
import typing
from typing import Any, Iterator

import attrs
import cattrs
from cattrs.errors import AttributeValidationNote, BaseValidationError, IterableValidationNote
from lsprotocol import validators
from pygls.protocol import default_converter

INTEGER_RANGES = {
    validators.integer_validator: (validators.INTEGER_MIN_VALUE, validators.INTEGER_MAX_VALUE),
    validators.uinteger_validator: (validators.UINTEGER_MIN_VALUE, validators.UINTEGER_MAX_VALUE),
}
# lsprotocol's range validators say "Position.line should be in range [0:2147483647], but was -1."
RANGE_MESSAGE = re.compile(r"^[\w.]+\.(?P<name>\w+) should be in range \[(?P<low>-?\d+):(?P<high>-?\d+)\], but was ")
MAX_PROBLEMS = 5  # in one message; the rest are counted


class FieldTypeError(TypeError):
    """A JSON value of the wrong type for a field (the field's name is added by `describe`)."""


def strict_converter() -> cattrs.Converter:
    """pygls's converter (lsprotocol's hooks) with strict primitive fields."""
    converter = default_converter()
    converter.register_structure_hook(int, _integer)
    converter.register_structure_hook(bool, _boolean)
    converter.register_structure_hook(str, _string)
    converter.register_structure_hook(float, _number)
    return converter


def _integer(value: Any, _: type) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)  # 3.0: some clients write every number as a float
    raise FieldTypeError("expected an integer")


def _boolean(value: Any, _: type) -> bool:
    if isinstance(value, bool):
        return value
    raise FieldTypeError("expected true or false")


def _string(value: Any, _: type) -> str:
    if isinstance(value, str):
        return value
    raise FieldTypeError("expected a string")


def _number(value: Any, _: type) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise FieldTypeError("expected a number")


def describe(error: Exception, message: dict[str, Any], limit: int = MAX_PROBLEMS) -> str:
    """One line naming each field of `message` (the raw JSON) that `error` (the converter's) complains of."""
    problems = list(_problems(error, message, ""))
    if not problems:
        return f"params do not fit: {error}"
    text = "; ".join(problems[:limit])
    return text if len(problems) <= limit else f"{text}; and {len(problems) - limit} more"


def _problems(error: BaseException, raw: Any, path: str) -> Iterator[str]:
    """What is wrong under `path`, whose raw JSON value is `raw`."""
    if isinstance(error, BaseValidationError):
        cls = getattr(error, "cl", None)
        if attrs.has(cls) and not isinstance(raw, dict):
            yield f"{path or 'message'}: expected an object, got {_json(raw)}"
            return
        for sub in error.exceptions:
            yield from _sub_problems(sub, raw, path, cls)
        return
    yield f"{path or 'message'}: {error}"


def _sub_problems(error: BaseException, raw: Any, path: str, cls: Any) -> Iterator[str]:
    note = next((n for n in getattr(error, "__notes__", ()) if isinstance(n, (AttributeValidationNote, IterableValidationNote))), None)
    if isinstance(note, AttributeValidationNote):
        key = wire_name(note.name)
        here = _join(path, key)
        if not isinstance(raw, dict) or key not in raw:
            yield f"{here}: required, missing"
        else:
            yield from _field_problems(error, raw[key], here, cls, note.name, note.type)
    elif isinstance(note, IterableValidationNote):
        here = f"{path}[{note.index!r}]" if isinstance(note.index, str) else f"{path}[{note.index}]"
        value = raw[note.index] if isinstance(raw, (list, dict)) and _has(raw, note.index) else None
        yield from _field_problems(error, value, here, None, None, note.type)
    elif isinstance(error, ValueError) and (match := RANGE_MESSAGE.match(str(error))):
        # A range validator: it ran in the constructor, after every field was read.
        key = wire_name(match["name"])
        value = raw.get(key) if isinstance(raw, dict) else None
        yield f"{_join(path, key)}: expected an integer in {match['low']}..{match['high']}, got {_json(value)}"
    elif isinstance(error, (TypeError, AttributeError)) and not isinstance(raw, dict) and attrs.has(cls):
        yield f"{path or 'message'}: expected an object, got {_json(raw)}"
    else:
        yield f"{path or 'message'}: {error}"


def _field_problems(error: BaseException, value: Any, path: str, owner: Any, name: str | None, kind: Any) -> Iterator[str]:
    expected = _unwrap_optional(kind)
    if isinstance(error, FieldTypeError):
        if expected is int and owner is not None and name is not None:
            low, high = _integer_range(owner, name)
            yield f"{path}: expected an integer in {low}..{high}, got {_json(value)}"
        else:
            yield f"{path}: {error}, got {_json(value)}"
    elif isinstance(error, BaseValidationError):
        yield from _problems(error, value, path)
    elif attrs.has(expected) and not isinstance(value, dict):
        yield f"{path}: expected an object, got {_json(value)}"
    elif typing.get_origin(expected) in (list, collections.abc.Sequence) and not isinstance(value, list):
        yield f"{path}: expected an array, got {_json(value)}"
    else:
        yield f"{path}: {error} (got {_json(value)})"


def _integer_range(owner: type, name: str) -> tuple[int, int]:
    field = attrs.fields_dict(owner).get(name) if attrs.has(owner) else None
    validator = getattr(field, "validator", None)
    return INTEGER_RANGES.get(validator, INTEGER_RANGES[validators.integer_validator])


def _unwrap_optional(kind: Any) -> Any:
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    return args[0] if typing.get_origin(kind) is typing.Union and len(args) == 1 else kind


def wire_name(attribute: str) -> str:
    """An lsprotocol attribute's JSON key: text_document -> textDocument, from_ -> from."""
    head, *rest = attribute.removesuffix("_").split("_")
    return head + "".join(part.title() for part in rest)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _has(container: list | dict, index: Any) -> bool:
    if isinstance(container, dict):
        return index in container
    return isinstance(index, int) and -len(container) <= index < len(container)


def _json(value: Any, limit: int = 60) -> str:
    """`value` as the client wrote it, shortened."""
    text = json.dumps(value, ensure_ascii=False, default=repr)
    return text if len(text) <= limit else text[: limit - 1] + "…"
