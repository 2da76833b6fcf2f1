"""A sentence to a form spec: what the sentence states, then the model for what it leaves open.

`read_sentence` (sentence.py) reads the title, the fields, their choices and, through the
lexicon, most of their types, before any model is asked. Only when a field's type or the
title is left open is the model asked, under a JSON schema built for this sentence
(`answer_schema`): every stated label is a `const`, in order, and the array has exactly
that many items, so the model cannot drop, rename or add a field; a stated type is a
`const` too. The model writes each field's English `name`, and the type of the open
fields only, never `choice`: only the sentence states choices. The engine's JSON-constrained decoding (`EngineAPI.generate_json`,
llguidance in engine/sampling/grammar.py) masks every token the schema forbids. llguidance
is already the engine's grammar library and its wheel has no Python dependencies (xgrammar
would pull in transformers).

Without the model (every type stated, or no engine), names come from the labels
(identifiers.py: pinyin for Chinese) and an open field is text, which a note says.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable

from loopcoder.engine.api import CancelCheck, EngineAPI, Priority
from loopcoder.engine.sampling import SamplingParams

from ..prompts import chat_ids, token_counter
from .identifiers import safe_identifier
from .lexicon import CODE_MAX_LENGTH, spec_type
from .sentence import StatedField, StatedForm, read_sentence
from .spec import FIELD_TYPES, LoadedSpec, load_spec

MAX_DESCRIPTION_CHARS = 2000
MAX_NEW_TOKENS = 1200
_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,39}$"
# The types the model may give a field the sentence left open: not `choice`, whose values only the
# sentence can state (a model asked for them invents some, and a form that refuses the real ones
# is worse than a text field).
OPEN_TYPES = tuple(t for t in FIELD_TYPES if t != "choice")

SYSTEM = (
    "You design data-entry forms. Turn the user's description into a JSON form spec. Keep every label exactly as "
    "the user wrote it. Give each field an English snake_case `name`. Where a field's type is open, pick it from: "
    + ", ".join(OPEN_TYPES) + ". Answer with JSON only."
)

ExampleField = tuple[str, str, str]  # label, name, type


def _example(title: str, entity: str, fields: list[ExampleField]) -> str:
    return json.dumps({"title": title, "entity": entity, "fields": [
        {"label": label, "name": name, "type": type_} for label, name, type_ in fields]},
        ensure_ascii=False, separators=(", ", ": "))


EXAMPLES = (
    ("做一个访客登记表,记录姓名、手机号、来访时间、来访目的(面试、送货、会议)和是否预约",
     _example("访客登记", "visitor", [
         ("姓名", "name", "text"),
         ("手机号", "phone", "phone"),
         ("来访时间", "visit_time", "datetime"),
         ("来访目的", "purpose", "choice"),
         ("是否预约", "has_appointment", "boolean"),
     ])),
    ("A form to sign up for a workshop: full name, email, number of seats, dietary preference, and t-shirt",
     _example("Workshop sign-up", "signup", [
         ("full name", "full_name", "text"),
         ("email", "email", "email"),
         ("number of seats", "seats", "integer"),
         ("dietary preference", "dietary_preference", "text"),
         ("t-shirt", "t_shirt", "text"),
     ])),
)

Progress = Callable[[int], None]  # tokens generated so far


@dataclass(frozen=True)
class Described:
    """A sentence's spec, with how each field's type was decided and what was not understood."""

    loaded: LoadedSpec
    kinds: tuple[str, ...]  # per spec field: its lexicon kind ("code" included), "choice", or the model's type
    reasons: tuple[str, ...]  # per spec field: why that kind ("lexicon: 日期", "choices", "model", "default")
    notes: tuple[str, ...]  # what the sentence states that the spec does not hold, and the defaults taken
    model_used: bool


def describe(description: str, engine: Callable[[], EngineAPI] | None = None, cancelled: CancelCheck | None = None,
             progress: Progress | None = None, max_new_tokens: int = MAX_NEW_TOKENS) -> Described:
    """The form spec a sentence describes: read from the sentence, the model (called only if needed) filling gaps.

    Raises NoFieldsError (an InvalidRequestError) when the sentence names no field.
    """
    stated = read_sentence(description)
    data, kinds, reasons, notes, model_used = decide(stated, description, engine, cancelled, progress, max_new_tokens)
    return Described(load_spec(data), tuple(kinds), tuple(reasons), tuple(stated.notes) + tuple(notes), model_used)


def decide(stated: StatedForm, sentence: str, engine: Callable[[], EngineAPI] | None = None,
           cancelled: CancelCheck | None = None, progress: Progress | None = None,
           max_new_tokens: int = MAX_NEW_TOKENS) -> tuple[dict, list[str], list[str], list[str], bool]:
    """Spec data for stated fields: the model (when there is one and something is open) names the
    fields and types the open ones. Returns (data, kinds, reasons, notes, whether the model answered)."""
    notes: list[str] = []
    open_fields = [f.label for f in stated.fields if f.kind is None]
    answer = None
    if (open_fields or stated.title is None) and engine is not None:
        model = engine()
        ids = chat_ids(model, SYSTEM, "", " ".join(sentence.split()), examples=EXAMPLES)
        answer, _ = model.generate_json("<scaffold>", ids, answer_schema(stated),
                                           SamplingParams(max_new_tokens=max_new_tokens),
                                           on_token=token_counter(progress), cancelled=cancelled,
                                           priority=Priority.ACTION)
    elif open_fields:
        notes.append(f"type not stated, text assumed (no model): {', '.join(open_fields)}")
    data, kinds, reasons = spec_data(stated, answer)
    if answer is not None:
        notes += [f"{label}: type not stated; the model chose {kind}"
                  for label, kind, reason in zip([f["label"] for f in data["fields"]], kinds, reasons)
                  if reason == "model"]
    return data, kinds, reasons, notes, answer is not None


def answer_schema(stated: StatedForm) -> dict[str, Any]:
    """The JSON schema the model answers under: the stated labels fixed, in order, none added or dropped."""
    items = []
    for f in stated.fields:
        properties: dict[str, Any] = {"label": {"const": f.label}, "name": {"type": "string", "pattern": _NAME_PATTERN}}
        if f.kind is None:
            properties["type"] = {"enum": list(OPEN_TYPES)}
        else:
            properties["type"] = {"const": spec_type(f.kind)}
        items.append({"type": "object", "properties": properties, "required": list(properties),
                      "additionalProperties": False})
    title = {"const": stated.title} if stated.title else {"type": "string", "minLength": 1, "maxLength": 60}
    count = len(items)
    return {"type": "object", "properties": {
        "title": title, "entity": {"type": "string", "pattern": _NAME_PATTERN},
        "fields": {"type": "array", "prefixItems": items, "items": False, "minItems": count, "maxItems": count},
    }, "required": ["title", "entity", "fields"], "additionalProperties": False}


def spec_data(stated: StatedForm, answer: dict | None) -> tuple[dict, list[str], list[str]]:
    """Spec data for what the sentence stated, the model's answer (if any) giving names and open types."""
    given = answer["fields"] if answer is not None else [{} for _ in stated.fields]
    fields, kinds, reasons = [], [], []
    for f, said in zip(stated.fields, given):
        kind, reason = f.kind, f.reason
        choices = list(f.choices)
        if kind is None and answer is not None:
            kind, reason = said["type"], "model"
            if kind not in OPEN_TYPES:  # the schema allows none other; an answer from elsewhere might
                kind, reason = "text", "default"
        elif kind is None:
            kind, reason = "text", "default"
        name = said.get("name") or safe_identifier("", f.label, len(fields) + 1)
        fields.append(_field_data(f, kind, choices, name))
        kinds.append(kind)
        reasons.append(reason)
    title = stated.title or (answer or {}).get("title") or ("表单" if stated.chinese else "Form")
    entity = (answer or {}).get("entity") or ""
    return {"title": title, "entity": entity or _entity(title), "fields": fields}, kinds, reasons


def _field_data(f: StatedField, kind: str, choices: list[str], name: str) -> dict[str, Any]:
    type_ = spec_type(kind) if kind != "choice" else "choice"
    data: dict[str, Any] = {"name": name, "label": f.label, "type": type_,
                            "required": f.required if f.required is not None else type_ != "boolean"}
    if type_ == "choice":
        data["choices"] = choices
    if kind == "code":
        data["max_length"] = CODE_MAX_LENGTH
    if type_ in ("integer", "decimal"):
        data.update({key: value for key, value in (("min", f.minimum), ("max", f.maximum)) if value is not None})
    if f.help:
        data["help"] = f.help[:200]
    return data


def _entity(title: str) -> str:
    name = safe_identifier("", title, 0)
    return "record" if name == "field_0" else name
