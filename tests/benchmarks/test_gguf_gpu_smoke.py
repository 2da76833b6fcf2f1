"""Smoke run of benchmarks/gguf_gpu.py on the CPU: --smoke runs one tiny shape through the
Triton kernels under TRITON_INTERPRET=1, checks them against the reference, prints the
table and writes the JSON and the plot (no timing is judged; the real runs are on a GPU,
docs/benchmarks.md "GGUF blocks on the GPU")."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gguf_gpu.py"


def run(*args: str, interpret: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "TRITON_INTERPRET": "1" if interpret else "0"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=300)


def test_gguf_gpu_smoke_on_cpu(tmp_path):
    pytest.importorskip("triton")
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: run the benchmark itself")
    out = tmp_path / "r.json"
    proc = run("--smoke", "--types", "Q4_K,Q8_0", "--rows", "1,8,512", "--json-out", str(out), "--plot-to",
               str(tmp_path / "r.png"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r = json.loads(out.read_text())
    assert [(row["type"], row["rows"], row["path"]) for row in r["results"]] == [
        ("Q4_K", 1, "GEMV"), ("Q4_K", 8, "tl.dot"), ("Q4_K", 512, "dequant+cuBLAS"),
        ("Q8_0", 1, "GEMV"), ("Q8_0", 8, "tl.dot"), ("Q8_0", 512, "dequant+cuBLAS")]
    assert all(row["error"] < 1e-2 and row["path_us"] > 0 for row in r["results"])
    assert "| Q8_0 | 48x512 | 8 | tl.dot |" in proc.stdout and (tmp_path / "r.png").stat().st_size > 0


def test_check_only_and_the_refusals():
    pytest.importorskip("triton")
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: the script would measure it")
    proc = run("--smoke", "--check-only", "--types", "Q5_0", "--rows", "3")
    assert proc.returncode == 0 and "| Q5_0 | 48x512 | 3 | tl.dot |" in proc.stdout, proc.stdout + proc.stderr
    proc = run("--smoke", interpret=False)
    assert proc.returncode == 2 and "set TRITON_INTERPRET=1" in proc.stderr
    proc = run(interpret=False)
    assert proc.returncode == 2 and "none is visible" in proc.stderr
