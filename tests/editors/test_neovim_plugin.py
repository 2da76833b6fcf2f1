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
