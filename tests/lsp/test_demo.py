"""`loopcoder demo` (what `make demo` runs) end to end: it drives a real server and prints each step."""

import ast
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
FLASK = (ROOT / "docs" / "examples" / "flask_app.py").read_text().splitlines()
SQL_LINE = 10  # 1-based, as the demo prints it: the query built by concatenating the user's name
DIAGNOSTIC = re.compile(r"^  flask_app\.py:(\d+):\d+: \w+ \[(\w+)\] (.*)$")
QUICK_FIX = re.compile(r"^    quick fix → (.*)$")


@pytest.fixture(scope="module")
def demo_output() -> str:
    """The demo's output, from one run with the real default model, for every test here."""
    done = subprocess.run([sys.executable, "-m", "loopcoder.lsp.cli", "demo", "--max-tokens", "16", "--action-tokens", "128"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.mark.slow
def test_demo_shows_ghost_text_a_review_and_a_hint(demo_output):
    out = demo_output
    for heading in ("1. Ghost text in demo.py", "2. Review of flask_app.py", "3. A hint for range_sums.py"):
        assert heading in out, out
    assert "code actions offered: loopcoder: Review, loopcoder: Explain, loopcoder: Hint" in out, out
    assert "  15 ▶     " in out, out  # the ghost text sits on the cursor line
    assert "done in" in out, out


@pytest.mark.slow
def test_demo_review_names_the_sql_injection_with_a_parameterized_fix(demo_output):
    review = demo_output.split("2. Review of flask_app.py", 1)[1].split("3. A hint", 1)[0]
    assert re.search(r"grounded in ruff \S+, bandit \S+", review), review
    findings = review_findings(review)
    for line, _, message, _ in findings:  # issue 19: the worked example's findings pasted onto the imports
        assert not (line in (1, 2) and re.search(r"shell|always returns True", message, re.IGNORECASE)), review
    [(_, category, message, fixes)] = [f for f in findings if f[0] == SQL_LINE and "SQL injection" in f[2]]
    assert category == "security" and fixes, review
    indent = FLASK[SQL_LINE - 1][: len(FLASK[SQL_LINE - 1]) - len(FLASK[SQL_LINE - 1].lstrip())]
    fixed = FLASK[: SQL_LINE - 1] + [indent + fixes[0]] + FLASK[SQL_LINE:]
    tree = ast.parse("\n".join(fixed))  # the fixed file parses
    [call] = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "attr", "") == "execute"]
    query, params = call.args  # parameterized: a constant query, the name passed apart from it
    assert isinstance(query, ast.Constant) and "?" in query.value and "'" not in query.value
    assert ast.unparse(params) == "(name,)"


def review_findings(review: str) -> list[tuple[int, str, str, list[str]]]:
    """(line, category, message, quick fixes) of each diagnostic the demo printed."""
    findings = []
    for line in review.splitlines():
        if m := DIAGNOSTIC.match(line):
            findings.append((int(m.group(1)), m.group(2), m.group(3), []))
        elif (m := QUICK_FIX.match(line)) and findings:
            findings[-1][3].append(m.group(1))
    return findings


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
