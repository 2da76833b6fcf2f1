"""editors/neovim, the loopcoder plugin, in real headless Neovims against the real server.

The same script (tests/editors/nvim/plugin.lua) runs three times: Neovim 0.7.2 (Debian's),
where the plugin draws ghost text with extmarks; Neovim 0.12-dev, where it turns on the
native vim.lsp.inline_completion; and 0.12-dev again with `inline = "extmark"`, so the
extmark renderer is also seen with 'inline' virtual text. In each it types in insert mode
with nvim_feedkeys, waits for the ghost text, accepts a word of it (<M-Right>) and then the
rest (<Tab>), and checks the buffer. The first two also run :LoopcoderReview and check
the diagnostics it leaves.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from loopcoder.lsp.features.scaffold import build

from .test_neovim import NeovimRun, _neovim_07, _neovim_012, _run

pytestmark = pytest.mark.slow

PLUGIN = Path(__file__).parents[2] / "editors" / "neovim"


def _run_plugin(tmp_path: Path, neovim, inline: str, review: bool) -> NeovimRun:
    env = {"LOOPCODER_NVIM_PLUGIN": str(PLUGIN), "LOOPCODER_NVIM_INLINE": inline,
           "LOOPCODER_NVIM_REVIEW": "1" if review else "0"}
    return _run(tmp_path, neovim, "plugin.lua", env)


@pytest.fixture(scope="module")
def plugin_07(tmp_path_factory) -> NeovimRun:
    return _run_plugin(tmp_path_factory.mktemp("plugin-0.7"), _neovim_07(), "auto", review=True)


@pytest.fixture(scope="module")
def plugin_012(tmp_path_factory) -> NeovimRun:
    return _run_plugin(tmp_path_factory.mktemp("plugin-0.12"), _neovim_012(), "auto", review=True)


@pytest.fixture(scope="module")
def plugin_012_extmark(tmp_path_factory) -> NeovimRun:
    return _run_plugin(tmp_path_factory.mktemp("plugin-0.12-extmark"), _neovim_012(), "extmark", review=False)


def _check_setup_errors(run: NeovimRun) -> None:
    pure = run.section("pure")
    errors = pure["errors"]
    assert "cmd[1] \"/nonexistent/bin/loopcoder\" is not an executable" in errors["missing_executable"], run.explain("pure")
    assert "cmd must be a list of strings" in errors["bad_cmd"], run.explain("pure")
    assert "unknown option colour" in errors["unknown_option"], run.explain("pure")
    assert "settings.maxTokenz is not a loopcoder setting" in errors["unknown_setting"], run.explain("pure")
    assert "settings.maxTokens must be integer" in errors["bad_setting_type"], run.explain("pure")
    assert "settings.backend must be one of local, inprocess, openai, tgi" in errors["bad_choice"], run.explain("pure")
    assert "inline must be" in errors["bad_inline"], run.explain("pure")
    assert "keymaps.accept_all is not a loopcoder keymap" in errors["bad_keymap"], run.explain("pure")
    assert all(e.startswith("loopcoder.setup: ") for e in errors.values() if e is not None), run.explain("pure")
    assert pure["next_word"] == [" +", "foo", "\n"], run.explain("pure")
    assert pure["next_line"] == ["a + b", "\n    return x"], run.explain("pure")
    assert pure["from_completion"]["text"] == " + b" and pure["from_inline"]["text"] == " + b", run.explain("pure")
    assert pure["empty_inline"] is None and pure["after_typed"] == [" b", None], run.explain("pure")
    assert "needs a description" in pure["scaffold_without_description"], run.explain("pure")


def _check_typing_and_accepting(run: NeovimRun, inline: str) -> None:
    assert run.section("start")["inline"] == inline, run.explain("start")
    typed = run.section("inline_completion")
    ghost = typed["ghost"]
    assert typed["mode"] == "i" and ghost["row"] == 2 and ghost["text"].strip(), run.explain("inline_completion")
    # The model goes on from `return a` with ` + b`: a word of it first, then the rest.
    assert "b" in ghost["text"], run.explain("inline_completion")
    assert typed["line_after_word"] == typed["line_before"] + typed["word"], run.explain("inline_completion")
    assert typed["rest"]["text"].strip(), run.explain("inline_completion")
    assert typed["line"] == typed["line_after_word"] + typed["rest"]["text"], run.explain("inline_completion")
    assert typed["line"].replace(" ", "") == "returna+b", run.explain("inline_completion")
    assert typed["ghost_after"] == 0, run.explain("inline_completion")


def _check_review(run: NeovimRun) -> None:
    review = run.section("review")
    texts = [m["message"] for m in review["messages"]]
    assert texts[0] == "loopcoder: reviewing…", run.explain("review")
    assert len(review["diagnostics"]) == review["findings"], run.explain("review")
    assert all(0 <= d["lnum"] <= d["end_lnum"] < review["line_count"] for d in review["diagnostics"]), run.explain("review")


def _check_error_messages(run: NeovimRun) -> None:
    no_client = [m["message"] for m in run.section("no_client")["messages"]]
    assert any("no loopcoder server is attached to this buffer" in m for m in no_client), run.explain("no_client")
    scaffold = [m["message"] for m in run.section("scaffold_prompts")["messages"]]
    assert any("needs a description" in m for m in scaffold), run.explain("scaffold_prompts")


def test_neovim_07_plugin_setup_rejects_bad_options(plugin_07: NeovimRun):
    assert plugin_07.results.get("version", "").startswith("NVIM v0.7"), plugin_07.explain("version")
    _check_setup_errors(plugin_07)
    assert "needs Neovim 0.12" in plugin_07.results["pure"]["errors"]["native_before_0_12"], plugin_07.explain("pure")


def test_neovim_07_plugin_ghost_text_with_extmarks(plugin_07: NeovimRun):
    _check_typing_and_accepting(plugin_07, "extmark")
    # Neovim 0.7 has no 'inline' virtual text: the ghost is drawn over the end of the line.
    assert plugin_07.results["inline_completion"]["ghost"]["virt_text_pos"] == "overlay", plugin_07.explain("inline_completion")


def test_neovim_07_plugin_review_and_errors(plugin_07: NeovimRun):
    _check_review(plugin_07)
    _check_error_messages(plugin_07)


def test_neovim_012_plugin_setup_rejects_bad_options(plugin_012: NeovimRun):
    assert plugin_012.results.get("version", "").startswith("NVIM v0.12"), plugin_012.explain("version")
    _check_setup_errors(plugin_012)


def test_neovim_012_plugin_native_inline_completion(plugin_012: NeovimRun):
    _check_typing_and_accepting(plugin_012, "native")


def test_neovim_012_plugin_review_and_errors(plugin_012: NeovimRun):
    _check_review(plugin_012)
    _check_error_messages(plugin_012)


def test_neovim_012_plugin_extmark_ghost_text(plugin_012_extmark: NeovimRun):
    _check_typing_and_accepting(plugin_012_extmark, "extmark")
    assert plugin_012_extmark.results["inline_completion"]["ghost"]["virt_text_pos"] == "inline", \
        plugin_012_extmark.explain("inline_completion")


# -- :LoopcoderScaffold: preview, confirm or cancel (tests/editors/nvim/scaffold.lua; no model) ---------------


@pytest.fixture(scope="module", params=["0.7", "0.12"])
def scaffold_run(request, tmp_path_factory) -> tuple[NeovimRun, Path]:
    tmp = tmp_path_factory.mktemp(f"scaffold-{request.param}")
    neovim = _neovim_07() if request.param == "0.7" else _neovim_012()
    return _run(tmp, neovim, "scaffold.lua", {"LOOPCODER_NVIM_PLUGIN": str(PLUGIN)}), tmp / "work"


def test_neovim_scaffold_previews_then_writes_the_confirmed_spec(scaffold_run):
    import json

    run, work = scaffold_run
    pure = run.section("pure")
    assert pure["confirm_without_spec"]["why"] == "the server's preview has no form spec to confirm", run.explain("pure")
    assert pure["confirm"] == {"target": "file:///w/app", "spec": {"title": "T"}}, run.explain("pure")
    assert pure["lines"] == ["T (table record), 1 field", "  A (a): text", "notes:", "  a note",
                             "1 file(s) in /w/app"], run.explain("pure")
    confirm = run.section("confirm")
    texts = [m["message"] for m in confirm["messages"]]
    # The summary is shown before the question; the question is Create or Cancel.
    summary = next(t for t in texts if t.startswith("loopcoder: 员工请假申请 (table "))
    assert "  所属部门 (suo_shu_bu_men): choice: 研发部 | 市场部 | 财务部, required" in summary.split("\n"), run.explain("confirm")
    assert confirm["selects"] == [{"items": ["Create", "Cancel"], "prompt": "Create this form app?"}], run.explain("confirm")
    assert any(t.startswith("loopcoder: wrote ") for t in texts), run.explain("confirm")
    manifest = json.loads((work / "leave" / "loopcoder-scaffold.json").read_text(encoding="utf-8"))
    assert [f["label"] for f in manifest["spec"]["fields"]][:2] == ["申请人姓名", "所属部门"]
    # Saved from the buffers the edit filled, byte for byte what the scaffolder renders.
    for name, text in build(spec=manifest["spec"]).files.items():
        assert (work / "leave" / name).read_text(encoding="utf-8") == text, name


def test_neovim_scaffold_cancel_writes_nothing_and_a_bad_folder_is_refused_before_asking(scaffold_run):
    run, work = scaffold_run
    cancel = run.section("cancel")
    assert len(cancel["selects"]) == 1 and not (work / "cancelled").exists(), run.explain("cancel")
    assert cancel["messages"][-1]["message"] == "loopcoder: cancelled: nothing was written", run.explain("cancel")
    outside = run.section("outside")
    assert outside["selects"] == [], run.explain("outside")
    assert any("is outside the workspace" in m["message"] for m in outside["messages"]), run.explain("outside")
