"""A sentence to a spec: what the sentence states is kept, the model is asked only for what it leaves open,
under a schema that fixes every stated label; and, with the real default model, that sentences with open
fields give a valid spec holding every stated field."""

import functools
import json

import jsonschema
import pytest

from loopcoder.engine.errors import InvalidRequestError
from loopcoder.engine.loader import load_tokenizer
from loopcoder.engine.sampling.schema import json_schema_grammar
from loopcoder.lsp.features.scaffold import FormSpec, NoFieldsError, build, describe, read_sentence
from loopcoder.lsp.features.scaffold.describe import EXAMPLES, answer_schema

REPAIRS = "做一个表单收集设备维修记录,包含日期、编号、故障类型、处理人"


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
        jsonschema.validate(self.answer, schema)  # a constrained model can only answer this
        self.calls.append((ids, schema, params))
        return self.answer, None


def _factory(engine):
    made = []

    def get():
        made.append(1)
        return engine
    return get, made


def test_the_examples_are_spec_shaped():
    for _, answer in EXAMPLES:
        data = json.loads(answer)
        assert {f["label"] for f in data["fields"]} and all(f["type"] for f in data["fields"])
    languages = {any("\u4e00" <= ch <= "\u9fff" for ch in question) for question, _ in EXAMPLES}
    assert languages == {True, False}  # a Chinese and an English example


def test_the_answer_schema_fixes_every_stated_label_and_type():
    schema = answer_schema(read_sentence(REPAIRS))
    assert json_schema_grammar(schema)
    items = schema["properties"]["fields"]["prefixItems"]
    assert [item["properties"]["label"] for item in items] == [{"const": x} for x in ("日期", "编号", "故障类型", "处理人")]
    assert [item["properties"]["type"].get("const") for item in items] == ["date", "text", None, "text"]
    assert "choices" not in items[2]["properties"] and "choice" not in items[2]["properties"]["type"]["enum"]
    assert schema["properties"]["fields"]["minItems"] == schema["properties"]["fields"]["maxItems"] == 4
    assert schema["properties"]["fields"]["items"] is False
    assert schema["properties"]["title"] == {"const": "设备维修记录"}
    dropped = {"title": "设备维修记录", "entity": "repair", "fields": [
        {"label": "日期", "name": "date", "type": "date"}, {"label": "编号", "name": "code", "type": "text"}]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(dropped, schema)  # a model cannot drop or rename a stated field
    invented = {"title": "设备维修记录", "entity": "repair", "fields": [
        {"label": "日期", "name": "date", "type": "date"}, {"label": "编号", "name": "code", "type": "text"},
        {"label": "故障类型", "name": "fault", "type": "choice"}, {"label": "处理人", "name": "handler", "type": "text"}]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(invented, schema)  # nor make an open field a choice, whose values it would invent
    with pytest.raises(jsonschema.ValidationError):
        invented["fields"][2] |= {"type": "text", "choices": ["电气", "机械"]}
        jsonschema.validate(invented, schema)


def test_the_model_decides_only_the_open_field():
    engine = _CannedEngine({"title": "设备维修记录", "entity": "repair_record", "fields": [
        {"label": "日期", "name": "repair_date", "type": "date"},
        {"label": "编号", "name": "code", "type": "text"},
        {"label": "故障类型", "name": "fault_type", "type": "long_text"},
        {"label": "处理人", "name": "handler", "type": "text"},
    ]})
    get, made = _factory(engine)
    described = describe(REPAIRS, get)
    assert len(made) == 1 and described.model_used
    spec = described.loaded.spec
    assert spec.title == "设备维修记录" and spec.entity == "repair_record"
    assert [(f.name, f.label, f.type) for f in spec.fields] == [
        ("repair_date", "日期", "date"), ("code", "编号", "text"), ("fault_type", "故障类型", "long_text"),
        ("handler", "处理人", "text")]
    assert spec.fields[1].max_length == 40 and not spec.fields[2].choices
    assert described.kinds == ("date", "code", "long_text", "text")
    assert described.reasons[2] == "model" and described.reasons[0] == "lexicon: 日期"
    assert "故障类型: type not stated; the model chose long_text" in described.notes
    ids, _, params = engine.calls[0]
    assert REPAIRS in engine.tokenizer.decode(ids) and params.max_new_tokens >= 1000


def test_a_sentence_that_states_every_type_needs_no_model():
    sentence = ("请做一个员工请假申请表单，包含申请人姓名、所属部门（研发部、市场部、财务部）、请假开始日期、结束日期、"
                "请假天数、请假原因，以及联系邮箱")
    get, made = _factory(None)
    app = build(sentence, engine=get)
    assert made == []  # never loaded
    spec = app.spec
    assert spec.title == "员工请假申请"
    assert [(f.label, f.type) for f in spec.fields] == [
        ("申请人姓名", "text"), ("所属部门", "choice"), ("请假开始日期", "date"), ("结束日期", "date"),
        ("请假天数", "integer"), ("请假原因", "long_text"), ("联系邮箱", "email")]
    assert spec.fields[1].choices == ["研发部", "市场部", "财务部"]
    assert [f.name for f in spec.fields][:2] == ["shen_qing_ren_xing_ming", "suo_shu_bu_men"]  # pinyin, no model
    assert all(f.required for f in spec.fields) and app.repairs == [] and app.notes == ()
    assert "app.py" in app.files


def test_without_a_model_an_open_field_is_text_and_a_note_says_so():
    described = describe(REPAIRS, None)
    assert not described.model_used
    assert described.loaded.spec.fields[2].type == "text" and described.reasons[2] == "default"
    assert described.notes == ("type not stated, text assumed (no model): 故障类型",)


def test_optional_and_boolean_fields_are_not_required():
    spec = describe("做一个访客登记表，包含姓名、是否预约、备注、车牌号（选填）、金额（元）").loaded.spec
    required = {f.label: f.required for f in spec.fields}
    assert required == {"姓名": True, "是否预约": False, "备注": False, "车牌号": False, "金额": True}
    assert spec.fields[4].help == "元" and spec.fields[4].type == "decimal"


@pytest.mark.parametrize("description, error, message", [
    ("   ", NoFieldsError, "describe the form in a sentence"),
    ("。，、", NoFieldsError, "describe the form in a sentence"),
    ("x" * 2001, InvalidRequestError, "keep it under 2000"),
])
def test_bad_descriptions_never_reach_the_model(description, error, message):
    get, made = _factory(_CannedEngine({}))
    with pytest.raises(error, match=message):
        describe(description, get)
    assert made == []


# Each expected field with the words a name may carry for it (the label's translation varies).
SENTENCES = [
    REPAIRS,
    "A form to log lab samples with sample label, storage shelf, collected on date and technician",
    "A customer feedback form with the customer's email, a rating from 1 to 5, channel, and whether we may "
    "contact them",
]


@pytest.mark.slow
@pytest.mark.parametrize("sentence", SENTENCES, ids=["zh-repairs", "en-samples", "en-feedback"])
def test_the_default_model_keeps_every_stated_field(default_engine, sentence):
    stated = read_sentence(sentence)
    described = describe(sentence, lambda: default_engine)
    spec = described.loaded.spec
    assert FormSpec.model_validate(spec.as_json()) == spec
    assert [f.label for f in spec.fields] == [f.label for f in stated.fields]
    print(f"\n{sentence!r}: {[(f.name, f.type) for f in spec.fields]}; notes {described.notes}")
