"""Deterministic renderers: a form spec to the files of a running app (jinja2 templates).

The same spec always gives the same bytes. Every app has the same layout, the same API
path and the same look; only the table, the fields and the titles differ::

    app.py  models.py  schema.sql  static/{index.html,app.js,style.css}
    test_app.py  pytest.ini  README.md  requirements.txt  .gitignore  loopcoder-scaffold.json
    alembic.ini  migrations/{env.py,script.py.mako,versions/0001.py,...}

The migrations come from the manifest's history of specs (migrations.py), one revision each.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jinja2
import markupsafe

from .columns import Column
from .migrations import Revision, first_history, render_migrations
from .samples import invalid_record, valid_record
from .spec import FormSpec

TEMPLATES = Path(__file__).resolve().parent / "templates"
API = "/api/records"
RUN = "python -m uvicorn app:app --host 127.0.0.1 --port {port}"
MANIFEST = "loopcoder-scaffold.json"

# (output path, template); templates ending in .j2 are rendered, the others copied verbatim.
OUTPUTS = (
    ("app.py", "app.py.j2"),
    ("models.py", "models.py.j2"),
    ("schema.sql", "schema.sql.j2"),
    ("static/index.html", "index.html.j2"),
    ("static/app.js", "static/app.js"),
    ("static/style.css", "static/style.css"),
    ("test_app.py", "test_app.py.j2"),
    ("pytest.ini", "pytest.ini"),
    ("README.md", "README.md.j2"),
    ("requirements.txt", "requirements.txt"),
    (".gitignore", "gitignore"),
    ("alembic.ini", "alembic.ini"),
    ("migrations/env.py", "alembic_env.py"),
    ("migrations/script.py.mako", "script.py.mako"),
)
# Every new app's files, in the order they are written (a changed app has more revisions).
FILE_NAMES = (*(name for name, _ in OUTPUTS), "migrations/versions/0001.py", MANIFEST)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True,
                             autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default=False))
    env.filters["py"] = _python_literal
    env.filters["doc"] = _docstring_text
    env.filters["md"] = lambda text: str(text).replace("|", "\\|")
    env.globals["attributes"] = _html_attributes
    env.globals["rules"] = _rules
    return env


def _python_literal(value: Any) -> str:
    """`value` (JSON data) as a Python literal; repr of str is always a valid, safe literal."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_python_literal(k)}: {_python_literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_python_literal(v) for v in value) + "]"
    if value is None or isinstance(value, (bool, int, float, str)):
        return repr(value)
    raise TypeError(f"no Python literal for {type(value).__name__}")


def _docstring_text(value: str) -> str:
    """User text safe inside a triple-quoted Python docstring: no escapes, no closing quotes."""
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _html_attributes(column: Column) -> markupsafe.Markup:
    parts = []
    for key, value in column.html_attributes:
        parts.append(f" {key}" if value is None else f' {key}="{markupsafe.escape(value)}"')
    return markupsafe.Markup("".join(parts))


def _rules(column: Column) -> str:
    f = column.field
    rules = []
    if f.unique:
        rules.append("unique")
    if f.choices:
        rules.append("one of: " + ", ".join(f.choices))
    if f.min is not None:
        rules.append(f"≥ {f.min:g}")
    if f.max is not None:
        rules.append(f"≤ {f.max:g}")
    if f.min_length:
        rules.append(f"at least {f.min_length} characters")
    if f.max_length is not None:
        rules.append(f"at most {f.max_length} characters")
    return "; ".join(rules)


def _language(spec: FormSpec) -> str:
    """The page's `lang`: Chinese when the labels are, else English."""
    text = spec.title + "".join(f.label for f in spec.fields)
    return "zh" if re.search(r"[\u4e00-\u9fff]", text) else "en"


# The page's own words, in the language of its labels.
UI_TEXT = {
    "en": {"save": "Save", "cancel": "Cancel edit", "records": "Records", "edit": "Edit", "delete": "Delete",
           "failed": "The server answered"},
    "zh": {"save": "保存", "cancel": "取消编辑", "records": "记录", "edit": "编辑", "delete": "删除",
           "failed": "服务器返回"},
}


def run_command(port: int | str = 8000) -> str:
    return RUN.format(port=port)


def render_app(spec: FormSpec, history: list[Revision] | None = None) -> dict[str, str]:
    """Every file of the app, by relative path (POSIX), the manifest included. `history` is the
    app's specs so far, `spec` the last (default: `spec` alone, a new app)."""
    history = history or first_history(spec)
    if history[-1].spec != spec:
        raise ValueError("the history's last spec is not the spec being rendered")
    env = _environment()
    columns = [Column(f) for f in spec.fields]
    context = {
        "spec": spec, "columns": columns, "api": API, "run_example": run_command(), "lang": _language(spec),
        "ui": UI_TEXT[_language(spec)],
        "valid": valid_record(spec), "invalid": invalid_record(spec),
        "required": [f.name for f in spec.fields if f.required],
        "unique": [f.name for f in spec.fields if f.unique],
    }
    files: dict[str, str] = {}
    for path, template in OUTPUTS:
        if template.endswith(".j2"):
            files[path] = env.get_template(template).render(context)
        else:
            files[path] = (TEMPLATES / template).read_text(encoding="utf-8")
    files.update(render_migrations(history))
    files[MANIFEST] = json.dumps(manifest(spec, [*files, MANIFEST], history), ensure_ascii=False, indent=2) + "\n"
    return files


def manifest(spec: FormSpec, files: list[str], history: list[Revision]) -> dict[str, Any]:
    """The app's manifest: its spec, how to run it, its files, and its history of specs (one
    migration each), which `loopcoder scaffold --change` continues."""
    return {"generator": "loopcoder scaffold", "spec": spec.as_json(), "run": RUN, "api": API, "form": "/",
            "files": files, "revision": history[-1].id, "history": [r.as_json() for r in history]}
