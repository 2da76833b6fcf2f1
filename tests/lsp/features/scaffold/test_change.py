"""Changes asked for in words (change.py): each clause read as one operation, fields found by label or name,
the new spec validated, the diff readable; words that cannot be read change nothing and say why."""

import pytest

from loopcoder.lsp.features.scaffold import load_spec
from loopcoder.lsp.features.scaffold.change import ChangeError, apply_change, clauses, read_change, spec_diff

from .specs import EVERY_TYPE, REPAIRS_ZH

REPAIRS = load_spec(REPAIRS_ZH).spec
EVERY = load_spec(EVERY_TYPE).spec


def _no_model():
    pytest.fail("the lexicon types every field these changes add")


def _changed(spec, words):
    return apply_change(spec, read_change(words, spec), words, _no_model)


def _ops(spec, words):
    return [(op.kind, op.labels, op.value) for op in read_change(words, spec)]


@pytest.mark.parametrize("words, ops", [
    ("删除备注；故障类型增加选项网络故障", [("remove", ("notes",), None), ("add_choices", ("fault_type",), ("网络故障",))]),
    ("把处理人删掉", [("remove", ("handler",), None)]),
    ("备注不要了", [("remove", ("notes",), None)]),
    ("把处理人改名为维修人", [("relabel", ("handler",), "维修人")]),
    ("处理人改为维修工程师", [("relabel", ("handler",), "维修工程师")]),
    ("处理人改为选填", [("required", ("handler",), False)]),
    ("处理人和备注改为必填", [("required", ("handler", "notes"), True)]),
    ("编号可以重复", [("unique", ("code",), False)]),
    ("日期改为日期时间", [("type", ("repair_date",), "datetime")]),
    ("编号改为文本类型", [("type", ("code",), "text")]),
    ("故障类型的选项改为电气、机械、其他", [("choices", ("fault_type",), ("电气", "机械", "其他"))]),
    ("故障类型去掉选项软件故障", [("remove_choices", ("fault_type",), ("软件故障",))]),
    ("标题改为设备维修台账", [("title", (), "设备维修台账")]),
    ("请加一个联系电话字段，再把处理人改为选填吧", [("add", (), ("联系电话字段", None)), ("required", ("handler",), False)]),
])
def test_chinese_clauses(words, ops):
    assert _ops(REPAIRS, words) == ops


@pytest.mark.parametrize("words, ops", [
    ("add a notes field and make body required", [("add", (), ("notes field", None)), ("required", ("body",), True)]),
    ("remove the phone field, rename Title to Headline", [("remove", ("contact_phone",), None),
                                                          ("relabel", ("title",), "Headline")]),
    ("make quantity a decimal", [("type", ("quantity",), "decimal")]),
    ("set size choices to S, M, L, XL", [("choices", ("size",), ("S", "M", "L", "XL"))]),
    ("add choice XL to size", [("add_choices", ("size",), ("XL",))]),
    ("remove choice S from size", [("remove_choices", ("size",), ("S",))]),
    ("make price required, make Email optional", [("required", ("price",), True),
                                                  ("required", ("contact_email",), False)]),
    ("add a required priority field (low, high)", [("add", (), ("priority field (low、high)", True))]),
    ("change the title to Inventory", [("title", (), "Inventory")]),
    ("starts at should be required", [("required", ("starts_at",), True)]),
    ("make contact_phone unique", [("unique", ("contact_phone",), True)]),
])
def test_english_clauses(words, ops):
    assert _ops(EVERY, words) == ops


def test_clauses_are_cut_at_punctuation_and_at_verbs_after_and():
    assert clauses("add notes and make body required; then remove price") == [
        "add notes", "make body required", "remove price"]
    assert clauses("加一个备注字段，处理人改为必填并删除编号") == ["加一个备注字段", "处理人改为必填", "删除编号"]


def test_the_issues_example_adds_an_optional_field_and_makes_one_required():
    spec = load_spec({**REPAIRS_ZH, "fields": [f for f in REPAIRS_ZH["fields"] if f["name"] != "notes"]
                      + [{"name": "handler_2", "label": "协助人", "type": "text"}]}).spec
    changed = _changed(spec, "加一个备注字段，协助人改为必填")
    added = changed.spec.fields[-1]
    assert (added.label, added.type, added.required) == ("备注", "long_text", False)
    assert changed.diff == ("~ 协助人 (handler_2): text, optional -> text, required",
                            f"+ 备注 ({added.name}): long_text, optional")


def test_added_fields_are_optional_unless_the_words_say_required():
    changed = _changed(EVERY, "add fields priority (low, medium, high), comments and due time")
    added = {f.label: f for f in changed.spec.fields[len(EVERY.fields):]}
    assert {label: (f.type, f.required) for label, f in added.items()} == {
        "priority": ("choice", False), "comments": ("long_text", False), "due time": ("datetime", False)}
    assert added["priority"].choices == ["low", "medium", "high"]
    required = _changed(EVERY, "add a required handler field").spec.fields[-1]
    assert (required.label, required.required) == ("handler", True)


def test_an_added_name_the_form_already_uses_gets_a_suffix():
    words = "add a body text field"  # the lexicon does not type "body text": without a model, text
    changed = apply_change(EVERY, read_change(words, EVERY), words, None)
    assert changed.spec.fields[-1].label == "body text" and changed.spec.fields[-1].type == "text"
    assert "type not stated, text assumed (no model): body text" in changed.notes
    again = _changed(REPAIRS, "加一个处理人电话")
    assert len({f.name for f in again.spec.fields}) == len(again.spec.fields)


def test_a_relabelled_field_keeps_its_column():
    changed = _changed(REPAIRS, "把处理人改名为维修人")
    field = next(f for f in changed.spec.fields if f.name == "handler")
    assert field.label == "维修人" and changed.diff == ("~ 维修人 (handler): label 处理人 -> 维修人",)


def test_a_type_change_drops_rules_the_new_type_cannot_have():
    changed = _changed(EVERY, "make quantity text")
    quantity = next(f for f in changed.spec.fields if f.name == "quantity")
    assert (quantity.type, quantity.min, quantity.max, quantity.max_length) == ("text", None, None, 200)
    same = _changed(REPAIRS, "编号改为文本")  # already text: its 30-character limit stays
    assert same.diff == () and next(f for f in same.spec.fields if f.name == "code").max_length == 30


def test_a_choice_is_found_by_a_part_only_one_choice_has():
    changed = _changed(REPAIRS, "故障类型去掉选项机械")
    assert next(f for f in changed.spec.fields if f.name == "fault_type").choices == ["电气故障", "软件故障", "其他"]


@pytest.mark.parametrize("spec, words, message", [
    (REPAIRS, "", "say what to change"),
    (REPAIRS, "blah blah", "nothing was changed: not understood: 'blah blah'"),
    (REPAIRS, "删除不存在的字段", "the form has no field '不存在的'; its fields are: 日期 (repair_date)"),
    (REPAIRS, "加一个联系电话，然后随便改改", "not understood: '随便改改'"),
    (EVERY, "remove t", "'t' could be any of"),
    (EVERY, "x" * 1001, "keep it under 1000"),
])
def test_words_that_cannot_be_read_change_nothing(spec, words, message):
    with pytest.raises(ChangeError, match=None) as caught:
        read_change(words, spec)
    assert message in str(caught.value)


@pytest.mark.parametrize("spec, words, message", [
    (EVERY, "make urgent unique", "Urgent is a yes/no field; it cannot be unique"),
    (REPAIRS, "处理人增加选项张三", "处理人 has no choices"),
    (REPAIRS, "故障类型去掉选项网络", "故障类型 has no choice '网络'"),
    (REPAIRS, "加一个处理人", "the form already has a field '处理人'"),
    (REPAIRS, "故障类型的选项改为其他", "give at least two choices"),
    (REPAIRS, "删除日期，删除编号，删除故障类型，删除处理人，删除备注", "fields"),
    (REPAIRS, "删除备注，备注改为必填", "removed by an earlier part of the change"),
])
def test_changes_the_spec_cannot_hold_are_refused(spec, words, message):
    with pytest.raises(Exception) as caught:
        _changed(spec, words)
    assert message in str(caught.value)


def test_the_diff_names_every_kind_of_difference():
    after = load_spec({**EVERY_TYPE, "title": "Stock", "fields": [
        {**EVERY_TYPE["fields"][0], "label": "Name"}, {**EVERY_TYPE["fields"][1], "max_length": 900},
        *EVERY_TYPE["fields"][3:], {"name": "extra", "label": "Extra", "type": "boolean"}]}).spec
    assert spec_diff(EVERY, after) == [
        "~ title: Every field type -> Stock",
        "- Quantity (quantity): integer, required, 1 to 99",
        "~ Name (title): label Title -> Name",
        "~ Body (body): long_text, optional, at most 500 characters -> long_text, optional, at most 900 characters",
        "+ Extra (extra): boolean, optional",
    ]
