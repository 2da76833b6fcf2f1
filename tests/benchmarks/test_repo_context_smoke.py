"""Smoke run of benchmarks/repo_context.py on the default model and a two-file repository: both passes
type, the context reaches the prompt, the table, JSON and plot are written (no timing is asserted)."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "repo_context.py"


def test_repo_context_quick(tmp_path):
    repo = tmp_path / "repo"
    (repo / "pkg").mkdir(parents=True)
    (repo / "pkg" / "__init__.py").write_text("")
    (repo / "pkg" / "money.py").write_text('def to_cents(amount):\n    """Euros to cents."""\n    return round(amount * 100)\n')
    (repo / "app.py").write_text("from pkg.money import to_cents\n\n\ndef price(x):\n    return to_cents(x) + 1\n")
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--repo", str(repo), "--file", "app.py", "--line", "5",
                           "--keystrokes", "3", "--tokens", "2", "--json-out", str(out / "r.json"),
                           "--plot-to", str(out / "r.png")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "repo / none" in proc.stdout and "typing 'ret'" in proc.stdout
    data = json.loads((out / "r.json").read_text())
    assert [len(data["passes"][k]) for k in ("none", "repo")] == [3, 3]
    assert all(r["context_tokens"] == 0 for r in data["passes"]["none"])
    assert all(r["context_tokens"] > 0 for r in data["passes"]["repo"])
    assert (out / "r.png").stat().st_size > 0
