"""Smoke run of the tensor-parallel benchmark on CPU: two gloo ranks, each building only its
shard of a tiny Loop model, an engine on rank 0 driving both through the broadcast; the
table and the JSON come out (no timing is checked; the GPU runs are in docs/benchmarks.md)."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "tp_decode.py"


def test_tp_decode_two_ranks_on_cpu(tmp_path):
    out = tmp_path / "tp.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--cpu", "--model", "tiny-loop", "--world-sizes", "2",
                           "--keystroke", "48", "--context", "24", "--tokens", "3", "--repeats", "1",
                           "--json-out", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (row,) = json.loads(out.read_text())["rows"]
    assert row["world_size"] == 2 and row["decode_ms_eager"] > 0
    assert row["collectives"] == 2 * 2 * 2 + 2  # loops x layers x (o_proj, down_proj) + embedding + logits
    assert row["keystroke"]["tokens"] == 48
    assert "| GPUs |" in proc.stdout
