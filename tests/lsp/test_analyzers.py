"""ruff and bandit as review findings: their fixes as whole lines, the ruff settings that apply to a
file, and an analyzer that is missing (the CI review's use of them: tests/lsp/features/ci_review/)."""

import pytest

from loopcoder.lsp.features import analyzers

needs_analyzers = pytest.mark.skipif(not (analyzers.executable("ruff") and analyzers.executable("bandit")),
                                     reason="ruff and bandit are dependencies of loopcoder: reinstall it")


def test_ruff_fix_edits_become_whole_lines():
    text = "a = 1\nif x == None:\n    pass\n"
    edit = [{"content": "is", "location": {"row": 2, "column": 6}, "end_location": {"row": 2, "column": 8}}]
    assert analyzers.apply_fix(text, edit) == (2, 2, "if x is None:")
    delete = [{"content": "", "location": {"row": 1, "column": 1}, "end_location": {"row": 2, "column": 1}}]
    assert analyzers.apply_fix(text, delete) == (1, 1, "")
    assert analyzers.apply_fix(text, []) is None


def test_the_nearest_ruff_settings_apply(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[tool.ruff]\nline-length = 100\n")
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "pyproject.toml").write_text("[project]\nname = 'a'\n")  # no [tool.ruff]: ruff looks further up
    assert analyzers.ruff_settings_folder(tmp_path / "a" / "b" / "m.py") == tmp_path
    (tmp_path / "a" / "ruff.toml").write_text("line-length = 90\n")
    assert analyzers.ruff_settings_folder(tmp_path / "a" / "b" / "m.py") == tmp_path / "a"


@needs_analyzers
def test_findings_carry_the_rule_the_line_and_ruffs_safe_fix(tmp_path):
    (tmp_path / "ruff.toml").write_text('[lint]\nselect = ["E711"]\n')
    text = "import subprocess\n\n\ndef f(x, cmd):\n    if x == None:\n        subprocess.call(cmd, shell=True)\n"
    notes = []
    found, ran = analyzers.run_analyzers({"pkg/m.py": text, "notes.txt": "not python"}, tmp_path, notes)
    assert [r.split()[0] for r in ran] == ["ruff", "bandit"] and notes == []
    by_rule = {f.rules[0]: f for f in found}
    assert by_rule["ruff:E711"].line == 5 and by_rule["ruff:E711"].path == "pkg/m.py"
    assert by_rule["ruff:E711"].replacement is None  # E711's fix is unsafe: not offered
    assert by_rule["bandit:B602"].line == 6 and by_rule["bandit:B602"].category == "security"


def test_a_missing_analyzer_is_noted(monkeypatch):
    monkeypatch.setattr(analyzers, "executable", lambda name: None)
    notes = []
    assert analyzers.run_analyzers({"m.py": "x = 1\n"}, None, notes) == ([], [])
    assert notes == ["ruff is not installed: its checks were skipped (pip install ruff)",
                     "bandit is not installed: its checks were skipped (pip install bandit)"]
    assert analyzers.run_analyzers({"m.txt": "x"}, None, notes) == ([], [])


@needs_analyzers
def test_settings_that_do_not_load_are_noted_and_the_other_analyzer_still_runs(tmp_path):
    (tmp_path / "ruff.toml").write_text('extend = "../elsewhere/ruff.toml"\n')  # not beside the copy
    notes = []
    found, ran = analyzers.run_analyzers({"m.py": "import subprocess\nsubprocess.call('ls', shell=True)\n"},
                                         tmp_path, notes)
    assert [r.split()[0] for r in ran] == ["bandit"] and {f.rules[0] for f in found} >= {"bandit:B602"}
    assert len(notes) == 1 and notes[0].startswith("ruff failed (exit 2): ") and "extended configuration" in notes[0]
