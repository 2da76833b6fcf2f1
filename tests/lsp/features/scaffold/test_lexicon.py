"""The field-type lexicon: the bundled table loads and is well formed, lead terms beat head terms, the
longest head term wins, and a malformed table is refused by name."""

import pytest

from loopcoder.lsp.features.scaffold.lexicon import KINDS, Lexicon, LexiconError, load_lexicon, spec_type
from loopcoder.lsp.features.scaffold.spec import FIELD_TYPES


def test_the_bundled_lexicon_loads_with_every_kind():
    lexicon = load_lexicon()
    assert {t.kind for t in lexicon.head + lexicon.lead} == set(KINDS)
    assert all(spec_type(kind) in FIELD_TYPES for kind in KINDS) and spec_type("code") == "text"
    texts = [t.text for t in lexicon.head]
    assert len(texts) == len(set(texts)), "a head term is listed under two kinds"


@pytest.mark.parametrize("label, kind", [
    ("日期", "date"), ("请假开始日期", "date"), ("开始时间", "datetime"), ("请假天数", "integer"),
    ("报销金额", "decimal"), ("联系邮箱", "email"), ("手机号码", "phone"), ("手机号", "phone"), ("编号", "code"),
    ("车牌号", "code"), ("请假原因", "long_text"), ("申请人姓名", "text"), ("处理人", "text"), ("是否预约", "boolean"),
    ("是否需要发票日期", "boolean"),
    ("start date", "date"), ("Date of birth", "date"), ("arrival time", "datetime"), ("number of days", "integer"),
    ("Number of seats", "integer"), ("price", "decimal"), ("Email address", "email"), ("phone number", "phone"),
    ("order number", "code"), ("ID", "code"), ("comments", "long_text"), ("reasons", "long_text"),
    ("full name", "text"), ("whether we may contact them", "boolean"), ("Is urgent", "boolean"),
])
def test_labels(label, kind):
    assert load_lexicon().classify(label).kind == kind


@pytest.mark.parametrize("label", ["故障类型", "severity", "issue", "日期范围", ""])
def test_labels_left_open(label):
    assert load_lexicon().classify(label) is None


def test_optional_terms():
    lexicon = load_lexicon()
    assert lexicon.is_optional("备注") and lexicon.is_optional("Additional comments")
    assert not lexicon.is_optional("请假原因")


@pytest.mark.parametrize("data, message", [
    ([], "a JSON object"),
    ({"lead": {}, "optional": {}}, "no 'head' table"),
    ({"lead": {}, "head": {"money": {"en": ["cash"]}}, "optional": {}}, "head.money: unknown kind"),
    ({"lead": {}, "head": {"date": {"fr": ["jour"]}}, "optional": {}}, "a table of zh and en term lists"),
    ({"lead": {}, "head": {"date": {"en": ["", "day"]}}, "optional": {}}, "a list of non-empty terms"),
])
def test_a_malformed_lexicon_is_refused(data, message):
    with pytest.raises(LexiconError, match=message):
        Lexicon(data)
