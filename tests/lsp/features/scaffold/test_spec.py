"""The form spec: valid specs round-trip, invalid ones fail with a message naming the field and the rule,
and unsafe or clashing names are repaired into safe unique identifiers."""

import copy
import json

import jsonschema
import pytest

from loopcoder.lsp.features.scaffold import FIELD_TYPES, FormSpec, SpecError, load_spec, spec_json_schema
from loopcoder.lsp.features.scaffold.identifiers import RESERVED, is_safe, safe_identifier, unique_names

from .specs import ALL, EVERY_TYPE, REPAIRS_ZH


@pytest.mark.parametrize("name", sorted(ALL))
def test_valid_specs_round_trip_and_match_the_json_schema(name):
    spec = load_spec(ALL[name]).spec
    data = spec.as_json()
    assert FormSpec.model_validate(data) == spec
    assert load_spec(json.dumps(data, ensure_ascii=False)).spec == spec
    assert load_spec(data).repairs == []  # already safe: nothing to repair the second time
    jsonschema.validate(data, spec_json_schema())
    for field in data["fields"]:
        assert {"name", "label", "type", "required"} <= set(field)
        assert ("choices" in field) == (field["type"] == "choice")


def test_every_field_type_is_covered():
    assert {f["type"] for f in EVERY_TYPE["fields"]} == set(FIELD_TYPES)


def test_text_fields_get_a_default_max_length():
    spec = load_spec(REPAIRS_ZH).spec
    by_name = {f.name: f for f in spec.fields}
    assert by_name["handler"].max_length == 200 and by_name["notes"].max_length == 5000
    assert by_name["code"].max_length == 30


def _with_field(**changes) -> dict:
    spec = copy.deepcopy(REPAIRS_ZH)
    spec["fields"][1].update(changes)
    return spec


@pytest.mark.parametrize("data, message", [
    ("{not json", "is not JSON"),
    ([1, 2], "JSON object with `title` and `fields`, not list"),
    ({"title": "x"}, "spec.fields: Field required"),
    ({"title": "x", "fields": []}, "spec.fields: List should have at least 1 item"),
    ({"title": "  ", "fields": [{"name": "a", "label": "A", "type": "text"}]}, "spec.title: title must not be empty"),
    (_with_field(type="choise"), "field 2 (code).type: unknown type 'choise'; use one of text, long_text"),
    (_with_field(type="choice", max_length=None), "field 2 (code): a choice field needs `choices`"),
    (_with_field(choices=["a", "b"]), "field 2 (code): `choices` is only for choice fields, not text"),
    (_with_field(type="integer", max_length=None, min=5, max=1), "field 2 (code): min (5) is greater than max (1)"),
    (_with_field(min=1), "field 2 (code): `min`/`max` are only for integer and decimal fields, not text"),
    (_with_field(type="date", max_length=None, min_length=1), "`min_length`/`max_length` are only for text"),
    (_with_field(min_length=50), "min_length (50) is greater than max_length (30)"),
    (_with_field(type="integer", max_length=None, min=0.5), "an integer field's min and max must be whole numbers"),
    (_with_field(label=""), "field 2 (code).label: label must not be empty"),
    (_with_field(label="two\nlines"), "one line of text without control characters"),
    (_with_field(type="choice", max_length=None, choices=["a", "a"]), "choices must be distinct; repeated: a"),
    (_with_field(type="choice", max_length=None, choices=[]), "a choice field needs `choices`"),
    (_with_field(colour="red"), "field 2 (code).colour: Extra inputs are not permitted"),
    (_with_field(required="sometimes"), "field 2 (code).required: Input should be a valid boolean"),
    (_with_field(type="boolean", max_length=None, unique=True), "a boolean field cannot be unique"),
    (_with_field(type="email", max_length=4), "an email field's max_length must be at least 6"),
    ({**REPAIRS_ZH, "fields": ["not an object"]}, "field 1: Input should be a valid dictionary"),
])
def test_invalid_specs_are_refused_with_the_reason(data, message):
    with pytest.raises(SpecError, match="invalid form spec|not JSON|JSON object") as error:
        load_spec(data)
    assert message in str(error.value)


def test_strict_validation_refuses_unsafe_names():
    data = copy.deepcopy(REPAIRS_ZH)
    data["fields"][0]["name"] = "select"
    with pytest.raises(ValueError, match="'select' is not a safe identifier"):
        FormSpec.model_validate(data)
    data["fields"][0]["name"] = "code"
    with pytest.raises(ValueError, match="field names must be distinct; repeated: code"):
        FormSpec.model_validate(data)


@pytest.mark.parametrize("candidate, label, expected", [
    ("fault_type", "", "fault_type"),
    ("FaultType", "", "fault_type"),
    ("Fault Type!", "", "fault_type"),
    ("class", "", "class_field"),  # Python keyword
    ("select", "", "select_field"),  # SQL keyword
    ("id", "", "id_field"),  # the generated primary key
    ("metadata", "", "metadata_field"),  # SQLAlchemy's declarative base
    ("model_name", "", "field_model_name"),  # pydantic's namespace
    ("2nd_address", "", "field_2nd_address"),
    ("../../etc/passwd", "", "etc_passwd"),
    ("", "故障类型", "gu_zhang_lei_xing"),  # pinyin when the model gives nothing usable
    ("故障类型", "故障类型", "gu_zhang_lei_xing"),
    ("", "Café crème", "cafe_creme"),
    ("", "Дата", "field_3"),  # nothing ASCII left: field_<position>
    ("___", "", "field_3"),
    ("x" * 60, "", "x" * 40),
])
def test_safe_identifier(candidate, label, expected):
    name = safe_identifier(candidate, label, position=3)
    assert name == expected
    assert is_safe(name)


def test_safe_identifier_cuts_long_names_at_a_word():
    name = safe_identifier("the_date_on_which_the_equipment_was_finally_repaired_by_staff")
    assert is_safe(name) and len(name) <= 40 and not name.endswith("_")


def test_unique_names_settle_clashes_in_order():
    assert unique_names(["code", "code", "date", "code"]) == ["code", "code_2", "date", "code_3"]


def test_load_spec_repairs_names_and_reports_each():
    loaded = load_spec({"title": "t", "entity": "../x", "fields": [
        {"name": "class", "label": "A", "type": "text"},
        {"name": "class", "label": "B", "type": "text"},
        {"label": "处理人", "type": "text"},
        {"name": "日期", "label": "日期", "type": "date"},
        {"name": "class_field", "label": "C", "type": "text"},
    ]})
    names = [f.name for f in loaded.spec.fields]
    assert names == ["class_field", "class_field_2", "chu_li_ren", "ri_qi", "class_field_3"]
    assert loaded.spec.entity == "x"
    assert len(loaded.repairs) == 6 and "field 2: 'class' -> 'class_field_2'" in loaded.repairs
    assert all(is_safe(n) and n not in RESERVED for n in names)
