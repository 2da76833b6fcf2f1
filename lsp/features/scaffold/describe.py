"""A sentence to a form spec, through the model under a JSON schema.

The model answers under GENERATION_SCHEMA with the engine's JSON-constrained decoding
(`EngineAPI.generate_json`, llguidance in engine/sampling/grammar.py): every token the
schema forbids is masked, so the answer always parses and has the spec's shape. We use
llguidance because it is already the engine's grammar library and its wheel has no
Python dependencies (xgrammar would pull in transformers). The schema is a subset of the
spec's: labels, names, types, required flags and choices, the parts a sentence says;
`normalize_answer` then settles what a schema cannot (a choice without options, names
that clash) and `load_spec` validates the result like any hand-written spec.

The prompt shows one Chinese and one English exchange: labels stay in the user's
language, names are English snake_case.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any, Callable

from loopcoder.engine.api import CancelCheck, EngineAPI, Priority
from loopcoder.engine.errors import InvalidRequestError
from loopcoder.engine.sampling import SamplingParams

from ..prompts import chat_ids, token_counter
from .spec import FIELD_TYPES, LoadedSpec, load_spec

MAX_DESCRIPTION_CHARS = 2000
MAX_NEW_TOKENS = 1200
_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,39}$"

GENERATION_SCHEMA: dict[str, Any] = {  # generation_schema() caps `fields` per description
    "type": "object",
    "properties": {
        "title": {"type": "string", "minLength": 1, "maxLength": 60},
        "entity": {"type": "string", "pattern": _NAME_PATTERN},
        "fields": {
            "type": "array",
            "minItems": 1,
            "maxItems": 16,
            "items": {
                "type": "object",
                "properties": {
                    # The label comes first: the model writes the user's word, then its English name.
                    "label": {"type": "string", "minLength": 1, "maxLength": 40},
                    "name": {"type": "string", "pattern": _NAME_PATTERN},
                    "type": {"enum": list(FIELD_TYPES)},
                    "required": {"type": "boolean"},
                    "choices": {"type": "array", "maxItems": 10,
                                "items": {"type": "string", "minLength": 1, "maxLength": 30}},
                },
                "required": ["label", "name", "type", "required", "choices"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["title", "entity", "fields"],
    "additionalProperties": False,
}

_LIST_SEPARATORS = re.compile(r"[、,，;；]|\s+and\s+|\s+or\s+|[和及与]")


def listed_items(description: str) -> int:
    """How many things the sentence lists: "...包含日期、编号、故障类型、处理人" has 5 parts (the lead-in counts)."""
    return len([part for part in _LIST_SEPARATORS.split(description) if part.strip()])


def generation_schema(description: str) -> dict[str, Any]:
    """GENERATION_SCHEMA with at most one field more than the sentence lists (and at least 3).

    A small model that has written every field it was asked for tends to go on repeating
    them; the cap ends the list, and `normalize_answer` drops the repeats within it.
    """
    schema = copy.deepcopy(GENERATION_SCHEMA)
    cap = max(3, min(schema["properties"]["fields"]["maxItems"], listed_items(description) + 1))
    schema["properties"]["fields"]["maxItems"] = cap
    return schema


SYSTEM = (
    "You design data-entry forms. Turn the user's description into a JSON form spec. Keep every label in the "
    "user's language, exactly as the user wrote it. Give each field an English snake_case `name`. Pick the type "
    "from: " + ", ".join(FIELD_TYPES) + ". Use choice with a short list of `choices` when the values come from a "
    "fixed set (otherwise `choices` is []). Mark a field required when the form is useless without it. Answer "
    "with JSON only."
)


def _example(title: str, entity: str, fields: list[tuple[str, str, str, bool, list[str]]]) -> str:
    return json.dumps({"title": title, "entity": entity, "fields": [
        {"label": label, "name": name, "type": type_, "required": required, "choices": choices}
        for label, name, type_, required, choices in fields]}, ensure_ascii=False, separators=(", ", ": "))


EXAMPLES = (
    ("做一个访客登记表,记录姓名、手机号、来访时间、来访事由和是否预约",
     _example("访客登记", "visitor", [
         ("姓名", "name", "text", True, []),
         ("手机号", "phone", "phone", True, []),
         ("来访时间", "visit_time", "datetime", True, []),
         ("来访事由", "reason", "choice", False, ["面试", "送货", "会议", "其他"]),
         ("是否预约", "has_appointment", "boolean", False, []),
     ])),
    ("A form to sign up for a workshop: full name, email, number of seats, dietary preference, and comments",
     _example("Workshop sign-up", "signup", [
         ("Full name", "full_name", "text", True, []),
         ("Email", "email", "email", True, []),
         ("Number of seats", "seats", "integer", True, []),
         ("Dietary preference", "dietary_preference", "choice", False, ["None", "Vegetarian", "Vegan"]),
         ("Comments", "comments", "long_text", False, []),
     ])),
)

Progress = Callable[[int], None]  # tokens generated so far


def spec_from_description(engine: EngineAPI, description: str, cancelled: CancelCheck | None = None,
                          progress: Progress | None = None, max_new_tokens: int = MAX_NEW_TOKENS) -> LoadedSpec:
    """The form spec a sentence describes, written by the model under GENERATION_SCHEMA and validated."""
    description = " ".join(description.split())
    if not description:
        raise InvalidRequestError("describe the form in a sentence, e.g. \"a form to record equipment repairs with "
                                  "date, id, fault type and handler\"")
    if len(description) > MAX_DESCRIPTION_CHARS:
        raise InvalidRequestError(f"the description is {len(description)} characters; keep it under "
                                  f"{MAX_DESCRIPTION_CHARS}, one or two sentences")
    ids = chat_ids(engine, SYSTEM, "", description, examples=EXAMPLES)
    answer, _ = engine.generate_json("<scaffold>", ids, generation_schema(description),
                                     SamplingParams(max_new_tokens=max_new_tokens),
                                     on_token=token_counter(progress), cancelled=cancelled, priority=Priority.ACTION)
    return load_spec(normalize_answer(answer))


# A text field whose name carries one of these words is that type: the checks are worth having.
_TEXT_AS = {"email": "email", "phone": "phone", "mobile": "phone", "tel": "phone", "telephone": "phone"}


def normalize_answer(answer: dict) -> dict:
    """The model's (schema-valid) answer as spec data: repeats dropped, `choices` kept only where they mean something.

    A field whose label repeats an earlier one's is a repeat (a form never asks twice). A
    text field named as an email or a phone number gets that type. A text field with two
    or more choices was meant as a choice; a choice field without any becomes text (a form
    with an empty drop-down is worse than a free field).
    """
    fields, labels = [], set()
    for f in answer["fields"]:
        f = dict(f)
        label = " ".join(f["label"].split()).casefold()
        if label in labels:
            continue
        labels.add(label)
        choices = list(dict.fromkeys(c.strip() for c in f.pop("choices", []) if c.strip()))
        words = set(f["name"].split("_"))
        if f["type"] == "text" and words & _TEXT_AS.keys():  # the small model calls most things text
            f["type"] = next(kind for word, kind in _TEXT_AS.items() if word in words)
        if f["type"] == "text" and len(choices) >= 2:
            f["type"] = "choice"
        if f["type"] == "choice":
            if choices:
                f["choices"] = choices
            else:
                f["type"] = "text"
        fields.append(f)
    return {**answer, "fields": fields}
