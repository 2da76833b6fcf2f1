"""A generated form in a real browser: Debian's chromium under Playwright (the Makefile installs
it). The browser's own validation stops an empty required field, a valid record saved through
the form appears in the list below it; `make docs-images` saves the page as
docs/img/scaffold_form.png for docs/scaffold.md."""

from pathlib import Path

import pytest

from .apps import render_into, running
from .specs import REPAIRS_ZH

CHROMIUM = Path("/usr/bin/chromium")

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(), reason="chromium is not installed: `make test` installs it"),
]


def test_the_generated_form_validates_and_saves_in_chromium(tmp_path, screenshot_path):
    playwright = pytest.importorskip("playwright.sync_api")
    manifest = render_into(tmp_path, REPAIRS_ZH)
    with running(tmp_path, manifest) as base, playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM),
                                    args=["--headless", "--no-sandbox", "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        try:
            page.goto(f"{base}/")
            for name in ("repair_date", "code", "fault_type", "handler", "notes"):
                assert page.locator(f"#field-{name}").count() == 1, name
            # An empty required field: the browser refuses the submission, nothing is saved.
            page.click("#save")
            assert page.evaluate("document.querySelector('#field-code').validity.valueMissing")
            assert page.locator("#records tbody tr").count() == 0
            page.fill("#field-repair_date", "2026-11-26")
            page.fill("#field-code", "EQ-0042")
            page.select_option("#field-fault_type", "机械故障")
            page.fill("#field-handler", "王工")
            page.fill("#field-notes", "更换传动皮带")
            page.click("#save")
            row = page.locator("#records tbody tr", has_text="EQ-0042")
            row.wait_for(timeout=15000)
            assert "机械故障" in row.inner_text() and "王工" in row.inner_text()
            page.screenshot(path=str(screenshot_path("scaffold_form.png")), full_page=True)
        finally:
            browser.close()
