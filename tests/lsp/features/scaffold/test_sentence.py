"""Reading a sentence before any model: the issue's sentences give exactly their fields, types, choices
and title; English lists; choices in parentheses and after 分为 / one of; and bad input."""

import pytest

from loopcoder.engine.errors import InvalidRequestError
from loopcoder.lsp.features.scaffold.sentence import NoFieldsError, read_sentence, split_list


def fields(sentence):
    return [(f.label, f.kind, list(f.choices)) for f in read_sentence(sentence).fields]


def test_the_leave_request_of_issue_23():
    stated = read_sentence("请做一个员工请假申请表单，包含申请人姓名、所属部门（研发部、市场部、财务部）、请假开始日期、结束日期、"
                           "请假天数、请假原因，以及联系邮箱")
    assert stated.title == "员工请假申请" and stated.chinese and stated.notes == ()
    assert [(f.label, f.kind, list(f.choices)) for f in stated.fields] == [
        ("申请人姓名", "text", []), ("所属部门", "choice", ["研发部", "市场部", "财务部"]), ("请假开始日期", "date", []),
        ("结束日期", "date", []), ("请假天数", "integer", []), ("请假原因", "long_text", []), ("联系邮箱", "email", [])]


def test_the_seed_sentence():
    stated = read_sentence("做一个表单收集设备维修记录,包含日期、编号、故障类型、处理人")
    assert stated.title == "设备维修记录"
    assert fields("做一个表单收集设备维修记录,包含日期、编号、故障类型、处理人") == [
        ("日期", "date", []), ("编号", "code", []), ("故障类型", None, []), ("处理人", "text", [])]


def test_an_english_leave_request():
    stated = read_sentence("a leave request form for employees with name, department (engineering, sales or finance), "
                           "start date, end date, number of days and reason")
    assert stated.title == "Leave request" and not stated.chinese
    assert [(f.label, f.kind, list(f.choices)) for f in stated.fields] == [
        ("name", "text", []), ("department", "choice", ["engineering", "sales", "finance"]), ("start date", "date", []),
        ("end date", "date", []), ("number of days", "integer", []), ("reason", "long_text", [])]


def test_an_english_feedback_form_with_a_range_and_a_yes_no_question():
    stated = read_sentence("A customer feedback form with the customer's email, a rating from 1 to 5, comments, and "
                           "whether we may contact them")
    assert stated.title == "Customer feedback"
    got = {f.label: f for f in stated.fields}
    assert list(got) == ["customer's email", "rating", "comments", "whether we may contact them"]
    assert (got["rating"].kind, got["rating"].minimum, got["rating"].maximum) == ("integer", 1, 5)
    assert got["whether we may contact them"].kind == "boolean" and got["comments"].required is False


@pytest.mark.parametrize("sentence, expected", [
    ("做一个报修表单，包含报修人、状态分为待处理、处理中、已完成，以及备注",
     [("报修人", "text", []), ("状态", "choice", ["待处理", "处理中", "已完成"]), ("备注", "long_text", [])]),
    ("a bug report form with title, severity, one of low, medium or high, and steps to reproduce",
     [("title", "text", []), ("severity", "choice", ["low", "medium", "high"]), ("steps to reproduce", None, [])]),
    ("A form for orders: customer, size (S/M/L), quantity and price.",
     [("customer", None, []), ("size", "choice", ["S", "M", "L"]), ("quantity", "integer", []),
      ("price", "decimal", [])]),
    ("做一个活动报名表,有姓名和手机、参与人员及是否住宿", [
        ("姓名", "text", []), ("手机", "phone", []), ("参与人员", "text", []), ("是否住宿", "boolean", [])]),
    ("做一个访客登记表,记录姓名、来访时间和来访事由", [
        ("姓名", "text", []), ("来访时间", "datetime", []), ("来访事由", "long_text", [])]),
])
def test_lists_and_choices(sentence, expected):
    assert fields(sentence) == expected


def test_what_follows_the_list_is_reported_not_dropped():
    stated = read_sentence("做一个请假表单，包含姓名、天数。审批人要能看到历史记录")
    assert [f.label for f in stated.fields] == ["姓名", "天数"]
    assert stated.notes == ("not understood: '审批人要能看到历史记录'",)


def test_a_repeated_field_is_kept_once_and_said():
    stated = read_sentence("a form with email, phone and email")
    assert [f.label for f in stated.fields] == ["email", "phone"]
    assert stated.notes[0] == "email: named twice; kept once" and "no title found in the sentence" in stated.notes


def test_conjunctions_inside_words_do_not_split():
    assert split_list("参与人员和总和、有效期") == ["参与人员", "总和", "有效期"]
    assert split_list("部门(研发部、市场部)、日期") == ["部门(研发部、市场部)", "日期"]


@pytest.mark.parametrize("sentence", ["", "   ", "。，、（）", "请做一个表单", "a simple form please"])
def test_no_field_says_so_and_suggests_words(sentence):
    with pytest.raises(NoFieldsError) as error:
        read_sentence(sentence)
    assert "包含" in str(error.value) and "including" in str(error.value)


def test_very_long_input_is_refused():
    with pytest.raises(InvalidRequestError, match="keep it under 2000"):
        read_sentence("包含" + "姓名、" * 1000)


def test_a_label_too_long_to_be_one_is_a_note():
    stated = read_sentence("a form with name, and please make sure that everything is stored safely in the database "
                           "for ten years")
    assert [f.label for f in stated.fields] == ["name"]
    assert stated.notes[0].startswith("not read as a field (longer than 40 characters)")
