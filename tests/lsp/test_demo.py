"""`loopcoder demo` (what `make demo` runs) end to end: it drives a real server and prints each step."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


@pytest.mark.slow
def test_demo_shows_ghost_text_a_review_and_a_hint():
    done = subprocess.run([sys.executable, "-m", "loopcoder.lsp.cli", "demo", "--max-tokens", "16", "--action-tokens", "128"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for heading in ("1. Ghost text in demo.py", "2. Review of flask_app.py", "3. A hint for range_sums.py"):
        assert heading in out, out
    assert "code actions offered: loopcoder: Review, loopcoder: Explain, loopcoder: Hint" in out, out
    assert "  15 ▶     " in out, out  # the ghost text sits on the cursor line
    assert "done in" in out, out


def test_demo_outside_the_repository_says_where_the_examples_are(tmp_path):
    done = subprocess.run([sys.executable, "-m", "loopcoder.lsp.cli", "demo", "--examples", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "demo.py is not a file" in done.stderr, done.stderr
