"""`loopcoder eval --kinds scaffold`: the bundled set is well formed, the scoring arithmetic on a hand-made
case, and a few sentences through the grounded parser alone (no model), over the command line too."""

import io
import json


from loopcoder.lsp.cli import main
from loopcoder.lsp.eval.scaffold import (evaluate_item, load_sentences, markdown_table, normalize, run_scaffold_eval,
                                         score_item, totals)
from loopcoder.lsp.features.scaffold.lexicon import KINDS


def test_the_bundled_set():
    items = load_sentences()
    assert len(items) >= 40 and len({i["id"] for i in items}) == len(items)
    assert {i["id"][:3] for i in items} == {"zh-", "en-"}
    for item in items:
        assert item["sentence"] and item["title"] and item["fields"]
        for f in item["fields"]:
            assert f["type"] in KINDS + ("choice",)
            assert (f["type"] == "choice") == ("choices" in f), item["id"]


def test_the_scoring_arithmetic():
    expected = {"title": "Repairs", "fields": [
        {"label": "Date", "type": "date"}, {"label": "the ID", "type": "code"},
        {"label": "kind", "type": "choice", "choices": ["a", "b"]}, {"label": "handler", "type": "text"}]}
    predicted = [{"label": "date ", "type": "date"}, {"label": "ID", "type": "text"},
                 {"label": "Kind", "type": "choice", "choices": ["B", "a"]}, {"label": "extra", "type": "text"}]
    counts = score_item(expected, predicted, "repairs")
    assert {k: counts[k] for k in ("expected", "predicted", "matched", "type_right", "choice_expected",
                                   "choice_right", "right", "title_right")} == {
        "expected": 4, "predicted": 4, "matched": 3, "type_right": 2, "choice_expected": 1, "choice_right": 1,
        "right": 2, "title_right": True}
    assert counts["missing"] == ["handler"] and counts["extra"] == ["extra"]
    assert counts["wrong"] == ["the ID: text [] (expected code [])"]
    table = markdown_table(totals([{"id": "en-x", **counts}]))
    # recall 3/4, precision 3/4, types 2/3, choices 1/1, titles 1/1, right 2/4
    assert "| en | 1 | 4 | 75.0% | 75.0% | 66.7% | 100.0% | 100.0% | 50.0% |" in table
    assert normalize("The Customer's  e-mail") == normalize("customers email")


def test_a_few_sentences_without_a_model(tmp_path):
    items = [i for i in load_sentences() if i["id"] in ("zh-issue-leave", "zh-issue-repairs", "en-issue-leave")]
    stdout = io.StringIO()
    rows = run_scaffold_eval(items, None, "test", out=tmp_path / "rows.jsonl", stdout=stdout)
    assert [r["right"] for r in rows] == [7, 4, 6]
    assert all(r["matched"] == r["expected"] == r["predicted"] and r["title_right"] for r in rows)
    assert not any(r["model_used"] for r in rows)
    assert rows[1]["notes"] == ["type not stated, text assumed (no model): 故障类型"]
    written = [json.loads(line) for line in (tmp_path / "rows.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in written] == [i["id"] for i in items]
    assert "| all | 3 | 17 | 100.0% |" in stdout.getvalue()


def test_a_sentence_without_fields_scores_zero():
    row = evaluate_item({"id": "zh-none", "sentence": "做一个表单", "title": "x",
                         "fields": [{"label": "姓名", "type": "text"}]}, None)
    assert row["matched"] == 0 and row["missing"] == ["姓名"] and "包含" in row["error"]


def test_the_command_line(tmp_path, capsys):
    out = tmp_path / "scaffold.jsonl"
    assert main(["eval", "--kinds", "scaffold", "--no-model", "--limit", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "### Scaffold sentences: no model" in printed and "| all | 2 |" in printed
    assert len(out.read_text(encoding="utf-8").splitlines()) == 2


def test_no_model_is_for_scaffold_only(capsys):
    assert main(["eval", "--kinds", "generation", "--no-model", "--limit", "1"]) != 0
    assert "--no-model is for --kinds scaffold" in capsys.readouterr().err
