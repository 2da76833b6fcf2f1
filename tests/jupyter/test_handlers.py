"""The extension's endpoints through a real jupyter-server (jp_fetch): authentication, bad
bodies, and each endpoint with the real default model (`slow`)."""

import json

import pytest
from loopcoder.jupyter_ext.app import LoopcoderExtension
from traitlets import TraitError

from .conftest import CONTEXT_BUDGET, code, error, markdown, stream

ROUTES = ["complete", "explain-error", "review", "hint", "scaffold"]
NOTEBOOK = [
    markdown("# Word counts"),
    code("from collections import Counter\n\nwords = ['a', 'b', 'a']\ncounts = Counter(words)", []),
    code("print(counts.most_common(1))", [stream("[('a', 2)]\n")]),
    code("def top(counter, n):\n    "),
]


def body(cells=NOTEBOOK, index=3, **extra) -> dict:
    return {"path": extra.pop("path", "work/counts.ipynb"), "cells": cells, "cell_index": index, **extra}


# -- no model needed ------------------------------------------------------------------------------


@pytest.mark.parametrize("route", ROUTES)
def test_unauthenticated_requests_get_403(fetch, route):
    status, _ = fetch(route, body(offset=0), headers={"Authorization": "token not-the-token"})
    assert status == 403


def test_stats_need_authentication_too(fetch):
    assert fetch("stats", method="GET", headers={"Authorization": "token wrong"})[0] == 403
    status, stats = fetch("stats", method="GET")
    assert status == 200 and stats["loaded"] is False and stats["context_budget"] == CONTEXT_BUDGET


BAD_BODIES = [
    ("complete", "not json", "not valid JSON"),
    ("complete", "[1, 2]", "must be a JSON object, not list"),
    ("complete", "", "has no body"),
    ("complete", {"cells": NOTEBOOK, "cell_index": 3, "offset": 0}, "\"path\" is missing"),
    ("complete", body(path="/etc/passwd", offset=0), "must be relative"),
    ("complete", body(path="../up.ipynb", offset=0), "without '..'"),
    ("complete", body(cells="x = 1", offset=0), "\"cells\" must be a non-empty list"),
    ("complete", body(cells=[], offset=0), "\"cells\" must be a non-empty list"),
    ("complete", body(cells=[{"cell_type": "sql", "source": ""}], index=0, offset=0), "cells[0].cell_type must be one of"),
    ("complete", body(cells=[{"cell_type": "code", "source": 3}], index=0, offset=0), "cells[0].source must be a string"),
    ("complete", body(cells=[{"cell_type": "code", "source": "", "outputs": {}}], index=0, offset=0),
     "cells[0].outputs must be a list"),
    ("complete", body(index="3", offset=0), "\"cell_index\" must be an integer"),
    ("complete", body(index=9, offset=0), "\"cell_index\" 9 is outside the notebook's 4 cells"),
    ("complete", body(), "\"offset\" must be an integer"),
    ("complete", body(offset=999), "\"offset\" 999 is outside cell 3"),
    ("complete", body(offset=0, stream="yes"), "\"stream\" must be true or false"),
    ("complete", body(index=0, offset=0), "cell 0 is a markdown cell"),
    ("explain-error", body(index=2), "cell 2 has no error output"),
    ("review", body(cells=[code("   \n")], index=0), "cell 0 is empty"),
    ("hint", body(cells=[code("")], index=0), "cell 0 is empty"),
    ("scaffold", {"path": "nb.ipynb", "description": "a form"}, "\"folder\" is missing"),
    ("scaffold", {"path": "nb.ipynb", "folder": "../out", "description": "a form"}, "must be inside the notebook's directory"),
    ("scaffold", {"path": "nb.ipynb", "folder": "app"}, "give the form as \"description\""),
    ("scaffold", {"path": "nb.ipynb", "folder": "app", "spec": {"title": 3}}, "spec"),
    ("scaffold", {"path": "nb.ipynb", "folder": "app", "description": "a form", "preview": "yes"},
     "\"preview\" must be true or false"),
    ("scaffold", {"path": "nb.ipynb", "folder": "app", "description": "a form", "preview": None},
     "\"preview\" must be true or false"),
    ("scaffold", {"path": "nb.ipynb", "folder": "/tmp/app", "description": "a form", "preview": True},
     "must be inside the notebook's directory"),
    ("scaffold", {"path": "nb.ipynb", "folder": "app", "preview": True,
                  "spec": {"title": "t", "fields": [{"name": "a", "label": "A", "type": "choice"}]}},
     "a choice field needs `choices`"),
]


@pytest.mark.parametrize("route, sent, message", BAD_BODIES, ids=[f"{r}-{m[:30]}" for r, _, m in BAD_BODIES])
def test_bad_bodies_get_400_with_a_message(fetch, route, sent, message):
    status, answer = fetch(route, sent)
    assert status == 400, answer
    assert message in answer["message"] and "Traceback" not in answer["message"]
    assert answer["error"] in ("InvalidRequestError", "ScaffoldTargetError", "SpecError")


def test_settings_are_checked_when_configured():
    with pytest.raises(TraitError, match="context_budget must be at least 1"):
        LoopcoderExtension(context_budget=0)
    with pytest.raises(TraitError, match="backend"):
        LoopcoderExtension(backend="cloud")
    assert LoopcoderExtension.class_traits()["include_outputs"].help


def test_a_failing_engine_is_a_json_error_not_a_stack_trace(fetch, extension):
    class Broken:
        loaded = None

        def get(self, settings):
            raise RuntimeError("the GPU caught fire")

    extension.engine = Broken()
    status, answer = fetch("complete", body(offset=4))
    assert status == 500 and "the GPU caught fire" in answer["message"] and "Traceback" not in json.dumps(answer)


SPEC = {"title": "Equipment repairs", "fields": [{"name": "repair_date", "label": "Date", "type": "date"},
                                                  {"name": "handler", "label": "Handler", "type": "text"}]}


def test_scaffold_from_a_spec_writes_into_the_notebooks_directory(fetch, jp_root_dir):
    (jp_root_dir / "work").mkdir()
    status, answer = fetch("scaffold", {"path": "work/repairs.ipynb", "folder": "repairs_app", "spec": SPEC})
    assert status == 200, answer
    assert answer["folder"] == "work/repairs_app"
    assert all(f.startswith("work/repairs_app/") for f in answer["files"])
    assert answer["run"].startswith("cd work/repairs_app && python3 -m venv .venv && ")  # from the server's root
    assert (jp_root_dir / "work" / "repairs_app" / "loopcoder-scaffold.json").is_file()
    status, again = fetch("scaffold", {"path": "work/repairs.ipynb", "folder": "repairs_app", "spec": SPEC})
    assert status == 400 and "already has" in again["message"]


def test_scaffold_preview_writes_nothing_and_the_spec_it_answers_is_what_is_written(fetch, jp_root_dir):
    (jp_root_dir / "work").mkdir()
    request = {"path": "work/leave.ipynb", "folder": "leave_app", "preview": True,
               "description": "请做一个员工请假申请表单，包含申请人姓名、所属部门（研发部、市场部、财务部）、请假开始日期、"
                              "结束日期、请假天数、请假原因，以及联系邮箱"}  # every type stated: no model
    status, preview = fetch("scaffold", request)
    assert status == 200, preview
    assert not (jp_root_dir / "work" / "leave_app").exists()
    assert preview["preview"] is True and preview["folder"] == "work/leave_app"
    assert preview["summary"][2] == "所属部门 (suo_shu_bu_men): choice: 研发部 | 市场部 | 财务部, required"
    assert "work/leave_app/app.py" in preview["files"]
    status, written = fetch("scaffold", {**request, "preview": False, "description": "", "spec": preview["spec"]})
    assert status == 200, written
    assert "preview" not in written and written["files"] == preview["files"] and written["spec"] == preview["spec"]
    manifest = json.loads((jp_root_dir / "work" / "leave_app" / "loopcoder-scaffold.json").read_text(encoding="utf-8"))
    assert manifest["spec"] == preview["spec"]
    # A full folder is refused at the preview, before the user is asked to confirm.
    status, again = fetch("scaffold", request)
    assert status == 400 and "already has" in again["message"]


# -- the real default model -----------------------------------------------------------------------


def _typed(source: str) -> list[dict]:
    return NOTEBOOK[:3] + [code(source)]


@pytest.mark.slow
def test_complete_answers_with_the_notebook_as_context(fetch, with_model):
    status, answer = fetch("complete", body(offset=len(NOTEBOOK[3]["source"]), multiline=True))
    assert status == 200, answer
    assert isinstance(answer["text"], str) and answer["cancelled"] is False
    # The cells above are in the prompt: far more tokens than the cell alone.
    assert answer["prompt_tokens"] > 40


@pytest.mark.slow
def test_complete_streams_ndjson_lines(fetch, with_model):
    source = "for word, n in counts.items():\n    print("
    status, text = fetch("complete", body(cells=_typed(source), offset=len(source), stream=True,
                                          path="work/stream.ipynb"))
    assert status == 200
    lines = [json.loads(line) for line in text.strip().split("\n")]
    assert lines[-1]["done"] is True
    shown = [line["text"] for line in lines[:-1]]
    assert not shown or shown[-1] == lines[-1]["text"] or lines[-1]["text"] == ""


@pytest.mark.slow
def test_a_second_keystroke_reuses_the_notebooks_warm_session(fetch, with_model):
    path = "work/warm.ipynb"
    first = "total = sum(counts.values())\nprint(tot"
    status, one = fetch("complete", body(cells=_typed(first), offset=len(first), path=path))
    assert status == 200, one
    _, stats_one = fetch("stats", method="GET")
    second = first + "al"
    status, two = fetch("complete", body(cells=_typed(second), offset=len(second), path=path))
    assert status == 200, two
    _, stats_two = fetch("stats", method="GET")
    assert two["usage"]["prefill_tokens"] * 4 < one["usage"]["prefill_tokens"]
    assert two["usage"]["cached_tokens"] > 0.75 * two["usage"]["prompt_tokens"]
    # The same, summed per notebook in the extension's stats; the engine holds its session.
    before, after = stats_one["usage"][path], stats_two["usage"][path]
    assert after["prefill_tokens"] - before["prefill_tokens"] == two["usage"]["prefill_tokens"]
    assert stats_two["loaded"] is True and stats_two["engine"]["sessions"] >= 1


@pytest.mark.slow
def test_a_huge_notebook_is_bounded_by_the_context_budget(fetch, with_model):
    cells = [code(f"value_{i} = {i} * 2\nprint(value_{i})", [stream(f"{i * 2}\n")]) for i in range(3000)]
    cells.append(code("result = value_2999 + "))
    status, answer = fetch("complete", body(cells=cells, index=3000, offset=len(cells[-1]["source"]),
                                            path="work/huge.ipynb"))
    assert status == 200, answer
    assert answer["prompt_tokens"] <= CONTEXT_BUDGET + 256 + 8


@pytest.mark.slow
def test_explain_error_reads_the_cells_traceback(fetch, with_model):
    cells = [code("print(undefined_name)", [error("NameError", "name 'undefined_name' is not defined", [
        "\x1b[0;31m---------------------------------------------------------------------------\x1b[0m",
        "\x1b[0;31mNameError\x1b[0m: name 'undefined_name' is not defined"])])]
    status, answer = fetch("explain-error", body(cells=cells, index=0, path="work/error.ipynb"))
    assert status == 200, answer
    assert answer["markdown"].strip()


@pytest.mark.slow
def test_review_returns_findings_with_ranges_in_the_cell(fetch, with_model):
    source = "import os\n\ndef list_dir(user_path):\n    os.system('ls ' + user_path)\n"
    status, answer = fetch("review", body(cells=[code(source)], index=0, path="work/review.ipynb"))
    assert status == 200, answer
    assert isinstance(answer["complete"], bool)
    lines = source.split("\n")
    for f in answer["findings"]:
        assert 0 <= f["line"] < len(lines) and f["severity"] in ("error", "warning", "info") and f["message"]
        assert source[f["from"]:f["to"]] == lines[f["line"]][f["start"]:f["end"]]


@pytest.mark.slow
def test_hint_asks_without_code_or_refuses_with_a_message(fetch, with_model):
    source = ('def range_sums(values, queries):\n    answers = []\n    for i, j in queries:\n'
              '        answers.append(sum(values[i:j]))\n    return answers\n')
    status, answer = fetch("hint", body(cells=[code(source)], index=0, path="work/hint.ipynb"))
    if status == 422:  # the no-code policy refused both answers
        assert "instead of a hint" in answer["message"]
    else:
        assert status == 200, answer
        assert answer["hint"].strip() and "```" not in answer["hint"]


@pytest.mark.slow
def test_scaffold_from_a_description_with_the_model(fetch, with_model, jp_root_dir):
    status, answer = fetch("scaffold", {"path": "repairs.ipynb", "folder": "repairs",
                                        "description": "a form to record equipment repairs with date and handler"})
    assert status == 200, answer
    assert answer["folder"] == "repairs" and answer["spec"]["fields"]
    assert (jp_root_dir / "repairs" / "app.py").is_file() or any(f.endswith(".py") for f in answer["files"])
