"""`loopcoder demo` (what `make demo` runs) end to end: it drives a real server and prints each step."""

import re
import subprocess
import sys
import time
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
    # The server may have started the demo's engine; still loading when the demo ended, it
    # was not stopped through its socket, and lingered 600 s (seen in CI). It gets 15 s.
    socket = re.search(r"starts the engine daemon on (\S+) on first use", done.stdout)
    if socket:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and engines_on(socket.group(1)):
            time.sleep(0.5)
        assert not engines_on(socket.group(1)), "the demo's engine outlived the demo"


def engines_on(socket_path: str) -> list[int]:
    """Running processes whose command line names socket_path."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and socket_path in (proc / "cmdline").read_bytes().decode(errors="replace") \
                    and (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids
