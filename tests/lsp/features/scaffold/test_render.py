"""The renderers: deterministic, the same layout for every spec, and user text always data, never code."""

import ast
import json
import re
import shutil
import sqlite3
import subprocess
import warnings

import pytest

from loopcoder.lsp.features.scaffold import MANIFEST, build, load_spec, render_app

from .specs import ALL, AWKWARD

LAYOUT = {"app.py", "models.py", "schema.sql", "static/index.html", "static/app.js", "static/style.css", "test_app.py",
          "pytest.ini", "README.md", "requirements.txt", ".gitignore", "alembic.ini", "migrations/env.py",
          "migrations/script.py.mako", "migrations/versions/0001.py", MANIFEST}


@pytest.mark.parametrize("name", sorted(ALL))
def test_rendering_is_deterministic_with_one_layout(name):
    spec = load_spec(ALL[name]).spec
    files = render_app(spec)
    assert files == render_app(spec)
    assert set(files) == LAYOUT
    manifest = json.loads(files[MANIFEST])
    assert manifest["files"] == list(files) and manifest["spec"] == spec.as_json()
    assert manifest["run"] == "python -m uvicorn app:app --host 127.0.0.1 --port {port}"
    assert manifest["run"].format(port=8000) in files["README.md"]
    # The README's commands work in a fresh shell, where `python` may not have the requirements (issue 23).
    for line in ("python3 -m venv .venv", ".venv/bin/python -m pip install -r requirements.txt",
                 ".venv/bin/python -m uvicorn app:app --host 127.0.0.1 --port 8000"):
        assert f"\n{line}\n" in files["README.md"], line


@pytest.mark.parametrize("name", sorted(ALL))
def test_python_files_compile_without_warnings(name):
    files = build(spec=ALL[name]).files
    for path in ("app.py", "models.py", "test_app.py"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # an invalid escape from a label would warn
            compile(files[path], path, "exec")


def test_awkward_text_stays_data():
    files = build(spec=AWKWARD).files
    module = ast.parse(files["app.py"])
    assert ast.get_docstring(module).startswith(AWKWARD["title"])
    literals = {n.value for n in ast.walk(module) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    assert set(AWKWARD["fields"][1]["choices"]) <= literals
    db = sqlite3.connect(":memory:")
    db.executescript(files["schema.sql"])
    columns = [row[1] for row in db.execute("PRAGMA table_info(awkward)")]
    assert columns == ["id", "class_field", "choice", "field_1st", "gu_zhang_lei_xing"]
    db.execute("INSERT INTO awkward (class_field, choice) VALUES (?, ?)", ("x", "it's"))
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        db.execute("INSERT INTO awkward (class_field, choice) VALUES (?, ?)", ("x", "its"))
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in files["static/index.html"]


def test_chinese_labels_give_a_chinese_page_and_keep_the_labels():
    files = build(spec=ALL["repairs_zh"]).files
    page = files["static/index.html"]
    assert '<html lang="zh">' in page
    for label in ("日期", "编号", "故障类型", "处理人", "电气故障"):
        assert label in page
    assert "-- 故障类型\n    fault_type VARCHAR(4) NOT NULL" in files["schema.sql"]


NODE = shutil.which("node")


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_the_script_parses_and_the_patterns_work_in_a_browser_regex_engine(tmp_path):
    from loopcoder.lsp.features.scaffold.columns import EMAIL_PATTERN, PHONE_PATTERN

    files = build(spec=ALL["every_type"]).files
    (tmp_path / "app.js").write_text(files["static/app.js"])
    subprocess.run([NODE, "--check", str(tmp_path / "app.js")], check=True)
    # Browsers compile `pattern` as ^(?:pattern)$ with the v flag, stricter than Python's re.
    cases = {EMAIL_PATTERN: (["user@example.com", "a@b.cd"], ["not-an-email", "a@b", "a b@c.d"]),
             PHONE_PATTERN: (["+1 555 0100", "(010) 1234-5678", "55555"], ["call me", "12", "+"])}
    script = "const cases = " + json.dumps([[p, ok, bad] for p, (ok, bad) in cases.items()]) + """;
    for (const [pattern, ok, bad] of cases) {
      const re = new RegExp(`^(?:${pattern})$`, "v");
      for (const s of ok) if (!re.test(s)) throw new Error(`${pattern} refuses ${s}`);
      for (const s of bad) if (re.test(s)) throw new Error(`${pattern} accepts ${s}`);
    }"""
    subprocess.run([NODE, "-e", script], check=True)
    for pattern, (ok, bad) in cases.items():  # the server agrees
        assert all(re.fullmatch(pattern, s) for s in ok) and not any(re.fullmatch(pattern, s) for s in bad)
