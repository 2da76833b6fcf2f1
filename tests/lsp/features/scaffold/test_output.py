"""Writing an app: only inside the output folder, never over a file without --force; and the CLI around it."""

import json
import os

import pytest

from loopcoder.lsp.cli import main
from loopcoder.lsp.features.scaffold import MANIFEST, ScaffoldTargetError, build, target_folder, write_files

from .specs import EVERY_TYPE, REPAIRS_ZH


def test_files_are_written_inside_the_folder(tmp_path):
    files = build(spec=REPAIRS_ZH).files
    paths = write_files(tmp_path / "app", files)
    assert sorted(p.relative_to(tmp_path / "app").as_posix() for p in paths) == sorted(files)


@pytest.mark.parametrize("name", ["../evil.py", "static/../../evil.py", "/tmp/evil.py", "", "a\\..\\evil.py"])
def test_names_that_climb_out_are_refused(tmp_path, name):
    with pytest.raises(ScaffoldTargetError, match="must stay inside the output folder"):
        write_files(tmp_path / "app", {"ok.txt": "fine", name: "evil"})
    assert not (tmp_path / "app").exists()  # nothing was written
    assert not (tmp_path / "evil.py").exists()


def test_a_symlink_out_of_the_folder_is_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    folder = tmp_path / "app"
    folder.mkdir()
    (folder / "static").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ScaffoldTargetError, match=r"leads outside .* \(through a symlink\)"):
        write_files(folder, build(spec=REPAIRS_ZH).files, force=True)
    assert list(outside.iterdir()) == [] and not (folder / "app.py").exists()


def test_existing_files_are_not_overwritten_without_force(tmp_path):
    files = build(spec=REPAIRS_ZH).files
    (tmp_path / "README.md").write_text("mine\n")
    with pytest.raises(ScaffoldTargetError, match="already has README.md: pass --force"):
        write_files(tmp_path, files)
    assert (tmp_path / "README.md").read_text() == "mine\n" and not (tmp_path / "app.py").exists()
    write_files(tmp_path, files, force=True)
    assert (tmp_path / "README.md").read_text() == files["README.md"]


def test_a_folder_in_the_way_is_refused(tmp_path):
    (tmp_path / "app.py").mkdir()
    with pytest.raises(ScaffoldTargetError, match="a folder of that name is in the way"):
        write_files(tmp_path, build(spec=REPAIRS_ZH).files, force=True)


@pytest.mark.parametrize("out, message", [
    ("", "the output folder is empty"),
    ("apps/../../etc", "contains '..'"),
])
def test_bad_output_folders(out, message):
    with pytest.raises(ScaffoldTargetError, match=message):
        target_folder(out)


def test_an_output_folder_that_is_a_file(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(ScaffoldTargetError, match="is a file, not a folder"):
        target_folder(tmp_path / "f")


# -- the command line --------------------------------------------------------------------


def _spec_file(tmp_path, spec=EVERY_TYPE):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
    return path


def test_cli_renders_a_spec_and_prints_the_run_command(tmp_path, capsys):
    out = tmp_path / "app"
    assert main(["scaffold", "--spec", str(_spec_file(tmp_path)), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == (f"cd {out} && python3 -m venv .venv && .venv/bin/python -m pip install -r "
                                    "requirements.txt && .venv/bin/python -m pytest -q && .venv/bin/python -m uvicorn "
                                    "app:app --host 127.0.0.1 --port 8000")
    assert "loopcoder scaffold: wrote" in captured.err and "10 fields" in captured.err
    assert json.loads((out / MANIFEST).read_text(encoding="utf-8"))["spec"]["title"] == EVERY_TYPE["title"]


def test_cli_refuses_to_overwrite_then_overwrites_with_force(tmp_path, capsys):
    out, spec = tmp_path / "app", _spec_file(tmp_path)
    assert main(["scaffold", "--spec", str(spec), "--out", str(out)]) == 0
    (out / "app.py").write_text("# edited\n")
    assert main(["scaffold", "--spec", str(spec), "--out", str(out)]) == 2
    assert "already has app.py" in capsys.readouterr().err
    assert (out / "app.py").read_text() == "# edited\n"
    assert main(["scaffold", "--spec", str(spec), "--out", str(out), "--force"]) == 0
    assert (out / "app.py").read_text() != "# edited\n"


def test_cli_reports_renamed_fields(tmp_path, capsys):
    spec = {"title": "t", "fields": [{"name": "class", "label": "Class", "type": "text"}, {"label": "处理人", "type": "text"}]}
    assert main(["scaffold", "--spec", str(_spec_file(tmp_path, spec)), "--out", str(tmp_path / "app")]) == 0
    err = capsys.readouterr().err
    assert "renamed field 1: 'class' -> 'class_field'" in err and "'chu_li_ren'" in err


@pytest.mark.parametrize("argv, message", [
    (["scaffold", "--out", "{tmp}/a"], "give the form as a sentence"),
    (["scaffold", "--spec", "{tmp}/missing.json", "--out", "{tmp}/a"], "cannot read the spec"),
    (["scaffold", "a form", "--out", "{tmp}/../a"], "contains '..'"),
    (["scaffold", "--spec", "{tmp}/bad.json", "--out", "{tmp}/a"], "invalid form spec: field 1 (a).type: unknown type"),
    (["scaffold", "--spec", "{tmp}/notjson.json", "--out", "{tmp}/a"], "the form spec is not JSON"),
])
def test_cli_bad_input_is_one_clear_line(tmp_path, capsys, argv, message):
    (tmp_path / "bad.json").write_text('{"title": "t", "fields": [{"name": "a", "label": "A", "type": "money"}]}')
    (tmp_path / "notjson.json").write_text("title: t")
    assert main([a.replace("{tmp}", str(tmp_path)) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("loopcoder: error: ") and message in err and err.count("\n") == 1


def test_cli_checks_the_folder_before_loading_a_model(tmp_path, capsys, monkeypatch):
    (tmp_path / "app.py").write_text("")
    monkeypatch.setenv("LOOPCODER_SOCKET", str(tmp_path / "no-daemon.sock"))
    assert main(["scaffold", "a form with a name", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "already has app.py" in err and "loading the model" not in err
    assert os.listdir(tmp_path) == ["app.py"]


def test_cli_rerenders_from_an_apps_manifest(tmp_path, capsys):
    out = tmp_path / "app"
    assert main(["scaffold", "--spec", str(_spec_file(tmp_path, REPAIRS_ZH)), "--out", str(out)]) == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    manifest = out / MANIFEST
    assert main(["scaffold", "--spec", str(manifest), "--out", str(out), "--force"]) == 0
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before  # deterministic
