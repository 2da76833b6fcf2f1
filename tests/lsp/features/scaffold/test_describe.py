"""A sentence to a spec: the prompt and schema the model gets, how its answer becomes a spec, and, with
the real default model, that three sentences each give a valid spec (field recall is printed, not
asserted: the 135M default model is weak)."""

import functools
import json

import jsonschema
import pytest

from loopcoder.engine.errors import InvalidRequestError
from loopcoder.engine.loader import load_tokenizer
from loopcoder.engine.sampling.schema import json_schema_grammar
from loopcoder.lsp.features.scaffold import FormSpec, spec_from_description
from loopcoder.lsp.features.scaffold.describe import (EXAMPLES, GENERATION_SCHEMA, generation_schema, listed_items,
                                                      normalize_answer)


@functools.lru_cache(maxsize=1)
def _tokenizer():
    return load_tokenizer()


class _CannedEngine:
    """Answers every generate_json with one canned value; keeps what it was asked."""

    def __init__(self, answer):
        self.tokenizer = _tokenizer()
        self.answer = answer
        self.calls = []

    def generate_json(self, key, ids, schema, params=None, **kwargs):
        self.calls.append((ids, schema, params))
        return self.answer, None


def test_the_generation_schema_is_one_llguidance_takes_and_the_examples_follow_it():
    assert json_schema_grammar(GENERATION_SCHEMA)
    for _, answer in EXAMPLES:
        jsonschema.validate(json.loads(answer), GENERATION_SCHEMA)
        FormSpec.model_validate(normalize_answer(json.loads(answer)))
    languages = {any("\u4e00" <= ch <= "\u9fff" for ch in question) for question, _ in EXAMPLES}
    assert languages == {True, False}  # a Chinese and an English example


def test_the_answer_becomes_a_repaired_valid_spec():
    engine = _CannedEngine({"title": "维修", "entity": "repair", "fields": [
        {"label": "日期", "name": "date", "type": "date", "required": True, "choices": []},
        {"label": "故障类型", "name": "type", "type": "text", "required": True, "choices": ["电气", "机械", "电气"]},
        {"label": "处理人", "name": "date", "type": "choice", "required": False, "choices": []},
        {"label": "编号", "name": "id", "type": "text", "required": True, "choices": []},
        {"label": "日期 ", "name": "date", "type": "date", "required": True, "choices": []},  # a repeat: dropped
        {"label": "邮箱", "name": "contact_email", "type": "text", "required": False, "choices": []},
        {"label": "手机", "name": "mobile_no", "type": "text", "required": False, "choices": []},
    ]})
    loaded = spec_from_description(engine, "做一个表单收集设备维修记录")
    ids, schema, params = engine.calls[0]
    assert schema == generation_schema("做一个表单收集设备维修记录") and params.max_new_tokens >= 1000
    assert schema["properties"]["fields"]["maxItems"] == 3  # nothing listed: the smallest cap
    assert "做一个表单收集设备维修记录" in engine.tokenizer.decode(ids)
    fields = {f.name: f for f in loaded.spec.fields}
    assert list(fields) == ["date", "type", "date_2", "id_field", "contact_email", "mobile_no"]
    assert fields["contact_email"].type == "email" and fields["mobile_no"].type == "phone"
    assert fields["type"].type == "choice" and fields["type"].choices == ["电气", "机械"]
    assert fields["date_2"].type == "text"  # a choice with no options is a free field
    assert loaded.repairs == ["field 3: 'date' -> 'date_2'", "field 4: 'id' -> 'id_field'"]


@pytest.mark.parametrize("description, items", [
    ("做一个表单收集设备维修记录,包含日期、编号、故障类型、处理人", 5),
    ("A form with name, email and phone", 3),
    ("A guest book", 1),
])
def test_the_field_cap_follows_the_listed_items(description, items):
    assert listed_items(description) == items
    assert generation_schema(description)["properties"]["fields"]["maxItems"] == max(3, items + 1)
    assert GENERATION_SCHEMA["properties"]["fields"]["maxItems"] == 16  # the shared schema is left alone


@pytest.mark.parametrize("description, message", [
    ("   ", "describe the form in a sentence"),
    ("x" * 2001, "keep it under 2000"),
])
def test_bad_descriptions(description, message):
    engine = _CannedEngine({})
    with pytest.raises(InvalidRequestError, match=message):
        spec_from_description(engine, description)
    assert engine.calls == []


# Each expected field with the words a name may carry for it (the label's translation varies).
SENTENCES = [
    ("做一个表单收集设备维修记录,包含日期、编号、故障类型、处理人",
     {"date": ("date",), "code": ("code", "id", "number", "no"), "fault_type": ("fault", "type"),
      "handler": ("handler", "handled", "person", "technician", "staff")}),
    ("A form to register new employees with full name, email, phone number, start date and department",
     {"full_name": ("name",), "email": ("email",), "phone": ("phone",), "start_date": ("start", "date"),
      "department": ("department", "dept")}),
    ("A customer feedback form with the customer's email, a rating from 1 to 5, comments, and whether we may "
     "contact them", {"email": ("email",), "rating": ("rating", "score"), "comments": ("comment",),
                      "may_contact": ("contact",)}),
]


def recall(expected: dict[str, tuple[str, ...]], names: list[str]) -> list[str]:
    """The expected fields some name stands for: one carrying one of its words, each name used once."""
    free, found = list(names), []
    for field, words in expected.items():
        match = next((n for n in free if any(w in n.split("_") or n.startswith(w) for w in words)), None)
        if match is not None:
            free.remove(match)
            found.append(field)
    return found


@pytest.mark.slow
@pytest.mark.parametrize("sentence, expected", SENTENCES, ids=["zh-repairs", "en-employees", "en-feedback"])
def test_the_default_model_gives_a_valid_spec(default_engine, sentence, expected):
    loaded = spec_from_description(default_engine, sentence)
    data = loaded.spec.as_json()
    assert FormSpec.model_validate(data) == loaded.spec
    names = [f["name"] for f in data["fields"]]
    found = recall(expected, names)
    print(f"\nfield recall {len(found)}/{len(expected)} for {sentence!r}: names {names}, "
          f"labels {[f['label'] for f in data['fields']]}, types {[f['type'] for f in data['fields']]}; "
          f"matched {found}")
