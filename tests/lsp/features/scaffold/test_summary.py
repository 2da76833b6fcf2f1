"""spec_summary: the lines every editor shows for a person to confirm a spec before the app is written."""

from loopcoder.lsp.features.scaffold import load_spec, spec_summary

from .specs import EVERY_TYPE, REPAIRS_ZH


def test_one_line_for_the_form_then_one_per_field():
    lines = spec_summary(load_spec(REPAIRS_ZH).spec)
    assert lines == [
        "设备维修记录 (table repair_record), 5 fields",
        "日期 (repair_date): date, required",
        "编号 (code): text, required, unique, at most 30 characters",
        "故障类型 (fault_type): choice: 电气故障 | 机械故障 | 软件故障 | 其他, required",
        "处理人 (handler): text, required",
        "备注 (notes): long_text — 可选: 处理过程",
    ]


def test_ranges_and_lengths_are_shown_only_when_set():
    lines = spec_summary(load_spec(EVERY_TYPE).spec)
    assert len(lines) == 1 + len(EVERY_TYPE["fields"])
    assert lines[1] == "Title (title): text, required, unique, 2 to 40 characters"
    assert lines[2] == "Body (body): long_text, at most 500 characters"
    assert lines[3] == "Quantity (quantity): integer, required, 1 to 99"
    assert lines[4] == "Price (price): decimal, 0 to 1000.5"
    assert lines[7] == "Size (size): choice: S | M | L, required"
    assert lines[8] == "Urgent (urgent): boolean"
    # The type's default length (254 for email) is not a constraint anyone set: not shown.
    assert lines[9] == "Email (contact_email): email, required, unique"
    assert lines[10] == "Phone (contact_phone): phone, 5 to 20 characters"


def test_one_field_and_one_sided_bounds():
    spec = load_spec({"title": "T", "fields": [{"name": "n", "label": "N", "type": "integer", "min": 0}]}).spec
    assert spec_summary(spec) == ["T (table record), 1 field", "N (n): integer, at least 0"]
