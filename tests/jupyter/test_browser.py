"""A real `jupyter lab` with the extension, driven in Debian's chromium by Playwright: ghost text
in a notebook cell, accepted with Tab, and a review from the cell's context menu.

The Makefile installs chromium (`make test`); Playwright's own browser download is not used.
The server logs to a file, so a failure shows its end. `make docs-images` saves its page as
docs/img/jupyterlab.png; a plain run saves it in the test's temporary folder.
"""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from loopcoder.lsp.features.scaffold import FILE_NAMES

CHROMIUM = Path("/usr/bin/chromium")
TOKEN = "loopcoder-browser-test"
TYPED = "def add_one(x):\n"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="chromium is not installed: `make test` installs it"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _notebook() -> dict:
    def cell(kind, source, **extra):
        return {"cell_type": kind, "metadata": {}, "source": source, **extra}

    return {
        "nbformat": 4, "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "cells": [
            cell("markdown", "# Shopping list\nSums the prices of the items."),
            cell("code", "import os\n\ndef run(user_input):\n    os.system('ls ' + user_input)",
                 outputs=[], execution_count=None),
            cell("code", "prices = {'apple': 3, 'pear': 4}\ntotal = sum(prices.values())\nprint(total)",
                 outputs=[{"output_type": "stream", "name": "stdout", "text": "7\n"}], execution_count=1),
            cell("code", "", outputs=[], execution_count=None),
        ],
    }


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    root = tmp_path_factory.mktemp("lab")
    (root / "notebooks").mkdir()
    (root / "notebooks" / "shopping.ipynb").write_text(json.dumps(_notebook()))
    settings = root / "settings" / "@jupyterlab" / "completer-extension"
    settings.mkdir(parents=True)
    # Ours is the only provider; the model on a busy CPU may take a while to answer.
    (settings / "inline-completer.jupyterlab-settings").write_text(json.dumps(
        {"providers": {"loopcoder": {"enabled": True, "timeout": 120000, "debouncerDelay": 200}}}))
    notifications = root / "settings" / "@jupyterlab" / "apputils-extension"
    notifications.mkdir(parents=True)
    (notifications / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false"}))
    port, log = _free_port(), root / "jupyter-lab.log"
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(root / "config"), "JUPYTER_RUNTIME_DIR": str(root / "runtime")}
    with open(log, "w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
             f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={root / 'notebooks'}",
             f"--LabApp.user_settings_dir={root / 'settings'}", f"--LabApp.workspaces_dir={root / 'workspaces'}",
             "--LabApp.news_url=None", "--ServerApp.allow_root=True", "--LoopcoderExtension.backend=inprocess",
             "--LoopcoderExtension.context_budget=1024", "--LoopcoderExtension.max_tokens=24",
             "--LoopcoderExtension.action_tokens=200"],
            stdout=out, stderr=subprocess.STDOUT, cwd=root, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(url, server, log)
        yield url, log
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()


def _wait_until_up(url: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"jupyter lab exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/loopcoder/stats?token={TOKEN}", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"jupyter lab did not answer within 120 s:\n{log.read_text()[-3000:]}")


def _cell_text(page, index: int) -> str:
    return page.evaluate(
        "i => document.querySelectorAll('.jp-Notebook .jp-Cell')[i].querySelector('.cm-content').innerText", index)


def test_ghost_text_and_a_review_in_a_real_jupyterlab(lab, screenshot_path):
    from playwright.sync_api import sync_playwright

    url, log = lab
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM),
                                    args=["--headless", "--no-sandbox", "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        try:
            page.goto(f"{url}/lab/tree/shopping.ipynb?token={TOKEN}")
            cells = page.locator(".jp-Notebook .jp-Cell")
            cells.nth(3).wait_for(timeout=60000)

            # Ghost text: type in the last cell, wait for the suggestion, accept it with Tab.
            cells.nth(3).locator(".cm-content").click()
            page.keyboard.type(TYPED)
            ghost = page.locator(".jp-GhostText")
            try:
                ghost.first.wait_for(timeout=60000)
            except Exception:  # no automatic suggestion: ask explicitly (Alt+\)
                page.keyboard.press("Alt+Backslash")
                ghost.first.wait_for(timeout=90000)
            page.wait_for_function("() => !document.querySelector('.jp-GhostText-streamedToken') "
                                   "&& document.querySelector('.jp-GhostText')?.innerText.trim()", timeout=90000)
            suggestion = ghost.first.inner_text()
            page.keyboard.press("Tab")
            page.wait_for_function("() => !document.querySelector('.jp-GhostText')", timeout=10000)
            text = _cell_text(page, 3)
            assert text.startswith(TYPED.rstrip("\n")) and len(text.strip()) > len(TYPED.strip()), text
            assert suggestion.strip().split("\n")[0] in text

            # A code action: review the cell with os.system from its context menu.
            cells.nth(1).locator(".cm-content").click()
            cells.nth(1).locator(".cm-content").click(button="right")
            page.get_by_text("loopcoder: Review This Cell").click()
            panel = cells.nth(1).locator(".lc-CellPanel")
            panel.wait_for(timeout=10000)
            page.wait_for_function(
                "() => !document.querySelector('.lc-CellPanel-waiting')", timeout=240000)
            assert panel.locator(".lc-CellPanel-error").count() == 0, panel.inner_text()
            findings = panel.locator(".lc-Finding")
            assert findings.count() > 0 or "No problems found." in panel.inner_text()
            for i in range(findings.count()):
                assert findings.nth(i).inner_text().startswith("Line ")

            cells.nth(3).locator(".cm-content").click()
            page.screenshot(path=str(screenshot_path("jupyterlab.png")))
        except Exception:
            page.screenshot(path=str(log.with_suffix(".png")))
            print(f"jupyter lab log ({log}):\n{log.read_text()[-4000:]}\nscreenshot: {log.with_suffix('.png')}")
            raise
        finally:
            browser.close()


LEAVE = ("请做一个员工请假申请表单，包含申请人姓名、所属部门（研发部、市场部、财务部）、请假开始日期、结束日期、"
         "请假天数、请假原因，以及联系邮箱")  # every field's type stated: no model


def _dialog(page, text: str):
    dialog = page.locator(".jp-Dialog").filter(has_text=text)
    dialog.wait_for(timeout=30000)
    return dialog


def _new_form_app(page, folder: str):
    """loopcoder: New Form App… from the command palette, the sentence and the folder answered."""
    palette = page.locator(".jp-ModalCommandPalette .lm-CommandPalette-input")
    for attempt in range(4):  # under load the first key press can land before the notebook has the focus
        page.locator(".jp-Notebook .jp-Cell").nth(2).locator(".jp-InputPrompt").click()  # the notebook has the focus
        page.keyboard.press("Control+Shift+C")
        try:
            palette.wait_for(state="visible", timeout=10000)
            break
        except Exception:
            if attempt == 3:
                raise
    palette.fill("New Form App")
    page.locator(".lm-CommandPalette-item").filter(has_text="loopcoder: New Form App").first.click()
    sentence = _dialog(page, "Describe the form in a sentence")
    sentence.locator("input").fill(LEAVE)
    sentence.locator(".jp-mod-accept").click()
    where = _dialog(page, "Folder for the app")
    where.locator("input").fill(folder)
    where.locator(".jp-mod-accept").click()


def test_scaffold_form_from_the_palette_previews_then_writes(lab):
    from playwright.sync_api import sync_playwright

    url, log = lab
    root = log.parent / "notebooks"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM),
                                    args=["--headless", "--no-sandbox", "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        try:
            page.goto(f"{url}/lab/tree/shopping.ipynb?token={TOKEN}")
            page.locator(".jp-Notebook .jp-Cell").nth(3).wait_for(timeout=60000)

            # Confirmed: the preview's summary is shown, nothing is written until Create.
            _new_form_app(page, "leave_app")
            preview = _dialog(page, "create this form app?")
            summary = preview.locator(".lc-Scaffold-preview").inner_text()
            assert "所属部门 (suo_shu_bu_men): choice: 研发部 | 市场部 | 财务部, required" in summary, summary
            assert f"{len(FILE_NAMES)} files in leave_app/" in summary, summary
            assert not (root / "leave_app").exists()
            preview.locator(".jp-mod-accept").click()
            result = _dialog(page, "the form app is written")
            assert "leave_app/app.py" in result.inner_text() and "python3 -m venv .venv" in result.inner_text()
            result.locator(".jp-mod-accept").click()
            manifest = json.loads((root / "leave_app" / "loopcoder-scaffold.json").read_text(encoding="utf-8"))
            assert [f["label"] for f in manifest["spec"]["fields"]][:2] == ["申请人姓名", "所属部门"]
            assert (root / "leave_app" / "app.py").is_file()

            # Cancelled at the preview: nothing written.
            _new_form_app(page, "cancelled_app")
            _dialog(page, "create this form app?").locator(".jp-mod-reject").click()
            page.locator(".jp-Dialog").wait_for(state="detached", timeout=10000)
            assert not (root / "cancelled_app").exists()

            # A full folder is refused by the preview, before anyone is asked to confirm.
            _new_form_app(page, "leave_app")
            refused = _dialog(page, "already has")
            assert page.locator(".lc-Scaffold-preview").count() == 0
            refused.locator(".jp-mod-reject").click()  # showErrorMessage has one button, Close
        except Exception:
            page.screenshot(path=str(log.with_suffix(".scaffold.png")))
            print(f"jupyter lab log ({log}):\n{log.read_text()[-4000:]}\nscreenshot: {log.with_suffix('.scaffold.png')}")
            raise
        finally:
            browser.close()
