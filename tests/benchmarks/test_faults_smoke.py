"""Smoke run of the fault benchmark: a real daemon through every probe at tiny counts; it
runs, writes its table, JSON and plot, every request is answered and the daemon lives (no
timing is checked)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "faults.py"


@pytest.mark.slow
def test_faults_quick(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--threads", "1", "--fuzz", "10", "--storms", "2", "--per-storm", "2",
                           "--hellos", "20", "--huge-mb", "1", "--typing", "2", "--json", str(tmp_path / "out.json"),
                           "--plot", str(tmp_path / "out.png")], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "| probe |" in proc.stdout and (tmp_path / "out.png").stat().st_size > 0
    data = json.loads((tmp_path / "out.json").read_text())
    assert data["alive"] and data["results"]["fuzz"] == {"tried": 10, "unanswered": 0}
    assert data["results"]["kill storm"]["unanswered"] == 0 and data["results"]["daemon kill"]["recovery_s"] > 0
