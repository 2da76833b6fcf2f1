"""Smoke run of the concurrency benchmark: a real daemon, two clients; it runs, writes its
table, JSON and plot, and the counts add up (no timing is checked)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "daemon_concurrency.py"


@pytest.mark.slow
def test_daemon_concurrency_quick(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--clients", "1,2", "--edits", "2", "--functions", "2",
                           "--max-tokens", "3", "--threads", "1", "--json", str(tmp_path / "out.json"),
                           "--plot", str(tmp_path / "out.png")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "| clients |" in proc.stdout and (tmp_path / "out.png").stat().st_size > 0
    rows = json.loads((tmp_path / "out.json").read_text())["rows"]
    assert [r["requests"] for r in rows] == [2, 4]
    assert [r["generated_tokens"] for r in rows] == [6, 12]
    assert all(r["cached_share"] > 0.5 for r in rows)  # every keystroke reused its warm document
