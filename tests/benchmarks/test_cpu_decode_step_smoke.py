"""Smoke run of benchmarks/cpu_decode_step.py on the default model: both variants decode,
the table and the outputs are written (no timing is asserted)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from loopcoder.kernels import decoder_cpu

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "cpu_decode_step.py"


@pytest.mark.skipif(decoder_cpu._kernel is None, reason=f"the C step is not built: {decoder_cpu.decoder_kernel_status()}")
def test_cpu_decode_step_quick(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--contexts", "40", "70", "--tokens", "3", "--out-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "| 70 |" in proc.stdout and "speed-up" in proc.stdout
    data = json.loads((tmp_path / "cpu_decode_step.json").read_text())
    assert set(data["ms_per_token"]) == {"40", "70"}
    assert (tmp_path / "cpu_decode_step.png").stat().st_size > 0
