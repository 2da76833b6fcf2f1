"""Smoke run of the GPU path benchmark on the CPU with a tiny Loop model: every figure runs
and lands in the JSON, the table prints and the plot is written (no timing is checked;
the real runs are on the device, docs/benchmarks.md)."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_path.py"


def test_gpu_path_quick_on_cpu(tmp_path):
    out = tmp_path / "r.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--cpu", "--model", "tiny-loop", "--tokens", "4",
                           "--decode-context", "40", "--keystroke", "64", "--prefill", "64,100", "--batches", "1,3",
                           "--batch-context", "24", "--repeats", "2", "--json-out", str(out),
                           "--plot-to", str(tmp_path / "r.png")], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r = json.loads(out.read_text())
    assert not [k for k in r if k.endswith("_error")], r
    assert set(r["decode"]["ms_per_token"]) == {"graphs+triton", "eager+triton", "eager torch"}
    assert list(r["keystroke"]) == ["64"] and list(r["prefill"]) == ["64", "100"]
    assert list(r["batch"]["graphs+triton"]) == ["1", "3"]
    assert r["kv"]["kv_bytes_per_token"] == 2 * 2 * 2 * 2 * 16 * 2  # loops x layers x (K, V) x KV heads x D x bf16
    assert "| path | ms/token |" in proc.stdout and (tmp_path / "r.png").stat().st_size > 0


def test_gpu_path_without_a_gpu_says_so():
    import pytest
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: the script would measure it")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--model", "7b"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "none is visible" in proc.stderr
