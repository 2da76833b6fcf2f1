"""Generated apps run: rendered into a folder, started with the manifest's `run` command on a free
port, they store a valid record and give it back, refuse an invalid one with 422, serve a form with
every field's validation attributes, and pass their own tests."""

from __future__ import annotations

import html
import subprocess
import sys
from html.parser import HTMLParser

import httpx
import pytest

from loopcoder.lsp.features.scaffold import load_spec
from loopcoder.lsp.features.scaffold.samples import invalid_record, valid_record

from .apps import render_into, running, venv_env
from .specs import ALL


@pytest.fixture(scope="module", params=sorted(ALL))
def app(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param)
    manifest = render_into(folder, ALL[request.param])
    spec = load_spec(manifest["spec"]).spec
    with running(folder, manifest) as base:
        yield folder, manifest, spec, base


def test_manifest_describes_the_app(app):
    folder, manifest, spec, _ = app
    assert {"spec", "run", "api", "files"} <= set(manifest)
    assert "{port}" in manifest["run"] and manifest["api"] == "/api/records"
    assert all((folder / name).is_file() for name in manifest["files"])
    assert spec.as_json() == manifest["spec"]


def test_valid_record_is_stored_and_given_back(app):
    _, manifest, spec, base = app
    record = valid_record(spec)
    created = httpx.post(base + manifest["api"], json=record, timeout=10)
    assert created.status_code == 201, created.text
    stored = created.json()
    assert {k: stored[k] for k in record} == record
    listed = httpx.get(base + manifest["api"], timeout=10).json()
    assert stored in listed
    assert httpx.get(f"{base}{manifest['api']}/{stored['id']}", timeout=10).json() == stored


def test_invalid_record_gets_422_with_a_message_per_field(app):
    _, manifest, spec, base = app
    response = httpx.post(base + manifest["api"], json=invalid_record(spec), timeout=10)
    assert response.status_code == 422
    errors = response.json()["errors"]
    assert set(errors) == {f.name for f in spec.fields}
    for f in spec.fields:
        assert errors[f.name].startswith(f"{f.label}: ")


class _Controls(HTMLParser):
    """Every named form control: tag and attributes; a select's option values."""

    def __init__(self):
        super().__init__()
        self.controls: dict[str, tuple[str, dict]] = {}
        self.options: dict[str, list[str]] = {}
        self._select: str | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("input", "textarea", "select") and "name" in attrs:
            self.controls[attrs["name"]] = (tag, attrs)
            self._select = attrs["name"] if tag == "select" else None
            self.options.setdefault(attrs["name"], [])
        elif tag == "option" and self._select:
            self.options[self._select].append(attrs.get("value"))

    def handle_endtag(self, tag):
        if tag == "select":
            self._select = None


INPUT_TYPES = {"text": "text", "integer": "number", "decimal": "number", "date": "date", "datetime": "datetime-local",
               "email": "email", "phone": "tel", "boolean": "checkbox"}


def _number(value) -> str:
    return f"{value:g}"


def test_form_has_every_field_with_its_validation_attributes(app):
    _, _, spec, base = app
    page = httpx.get(f"{base}/", timeout=10)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    parser = _Controls()
    parser.feed(page.text)
    assert set(parser.controls) == {f.name for f in spec.fields}
    assert "<script>alert" not in page.text and "<b>markup" not in page.text  # labels and choices are escaped
    for f in spec.fields:
        tag, attrs = parser.controls[f.name]
        assert f.label in html.unescape(page.text)
        if f.type == "long_text":
            assert tag == "textarea"
        elif f.type == "choice":
            assert tag == "select" and parser.options[f.name] == ["", *f.choices]
        else:
            assert tag == "input" and attrs["type"] == INPUT_TYPES[f.type], f.name
        assert ("required" in attrs) == (f.required and f.type != "boolean"), f.name
        if f.min is not None:
            assert attrs["min"] == _number(f.min)
        if f.max is not None:
            assert attrs["max"] == _number(f.max)
        if f.max_length is not None:
            assert attrs["maxlength"] == str(f.max_length)
        if f.min_length:
            assert attrs["minlength"] == str(f.min_length)
        if f.type in ("email", "phone"):
            assert attrs["pattern"]
        if f.type == "integer":
            assert attrs["step"] == "1"


def test_static_files_are_served(app):
    _, _, _, base = app
    assert "record-form" in httpx.get(f"{base}/static/app.js", timeout=10).text
    assert httpx.get(f"{base}/static/style.css", timeout=10).status_code == 200


def test_the_apps_own_tests_pass(app):
    folder = app[0]
    result = subprocess.run([sys.executable, "-m", "pytest"], cwd=folder, env=venv_env(), capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout and "failed" not in result.stdout
