"""Smoke run of benchmarks/gguf_agreement.py on two small random GGUFs: it runs without
llama.cpp (its columns stay empty), writes its outputs, and the decode path's logits stay
close to the float32 of the same blocks while the prefill rows equal them."""

import json
import math
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gguf_agreement.py"


def test_gguf_agreement_quick(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--no-default", "--types", "Q4_K,Q8_0", "--windows", "1", "--positions", "24",
         "--out-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = json.loads((tmp_path / "gguf_agreement.json").read_text())
    assert [r["file"] for r in rows] == ["random llama, Q4_K", "random llama, Q8_0"]
    for r in rows:
        assert r["positions"] == 24
        assert r["err_vs_float"] < 0.05 and r["top1_vs_float"] >= 0.75  # int8 activations, a few % at most
        assert r["prefill_top1_vs_float"] == 1.0
        if math.isnan(r["top1_vs_llama"]):
            assert "llama-cpp-python is not installed" in proc.stdout
    assert (tmp_path / "gguf_agreement.png").stat().st_size > 0
    assert "| random llama, Q8_0 |" in (tmp_path / "gguf_agreement.md").read_text()
