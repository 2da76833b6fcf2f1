"""`loopcoder scaffold --change`: a generated app changed in words keeps its records, through Alembic
migrations run on a real SQLite file by the app's own code; a change that would lose values asks for
--force; one the records cannot survive, or a migration that fails, leaves the database and the files
as they were."""

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from loopcoder.lsp.cli import main
from loopcoder.lsp.features.scaffold import MANIFEST, build, load_spec, render_app, write_files
from loopcoder.lsp.features.scaffold.migrations import continue_history, first_history, load_history

from .apps import venv_env
from .specs import EVERY_TYPE, REPAIRS_ZH

RECORDS = [("2026-12-01", "WX-2026-001", "电气故障", "张三", "换了保险丝"),
           ("2026-12-02", "WX-2026-002", "机械故障", "李四", None),
           ("2026-12-03", "WX-2026-003", "其他", "王五", "待复查")]


def _python(folder: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=folder, env=venv_env(), capture_output=True, text=True,
                          timeout=300)


@pytest.fixture
def repairs(tmp_path):
    """The repairs app with its database made by its own migration and three records in it."""
    folder = tmp_path / "repairs"
    write_files(folder, build(spec=REPAIRS_ZH).files)
    made = _python(folder, "models.py")
    assert made.returncode == 0 and "created the repair_record table (revision 0001)" in made.stdout, made.stderr
    with sqlite3.connect(folder / "records.db") as db:
        db.executemany("INSERT INTO repair_record (repair_date, code, fault_type, handler, notes) VALUES (?, ?, ?, ?, ?)",
                       RECORDS)
    return folder


def _rows(folder: Path, columns: str = "repair_date, code, fault_type, handler") -> list[tuple]:
    with sqlite3.connect(folder / "records.db") as db:
        return db.execute(f"SELECT {columns} FROM repair_record ORDER BY id").fetchall()


def _revision(folder: Path, name: str = "records.db") -> str:
    with sqlite3.connect(folder / name) as db:
        return db.execute("SELECT version_num FROM alembic_version").fetchone()[0]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts}


def _change(folder: Path, words: str, *extra: str) -> int:
    return main(["scaffold", "--change", words, "--spec", str(folder / MANIFEST), *extra])


def test_a_change_keeps_every_record(repairs, capfd):
    assert _change(repairs, "加一个联系电话字段，处理人改为选填，故障类型增加选项网络故障") == 0
    out, err = capfd.readouterr()  # capfd: the migration's own line comes from the app's interpreter
    assert "+ 联系电话 (" in out and "~ 处理人 (handler): text, required -> text, optional" in out
    assert "3 records kept" in out and "records.db.before-0002.bak" in out
    assert _rows(repairs) == [r[:4] for r in RECORDS]
    assert _rows(repairs, "notes") == [(r[4],) for r in RECORDS]
    assert _revision(repairs) == "0002"
    backup = repairs / "records.db.before-0002.bak"
    assert _revision(repairs, backup.name) == "0001" and _rows(repairs) == [r[:4] for r in RECORDS]
    manifest = json.loads((repairs / MANIFEST).read_text(encoding="utf-8"))
    assert [h["revision"] for h in manifest["history"]] == ["0001", "0002"]
    assert manifest["history"][1]["change"] == "加一个联系电话字段，处理人改为选填，故障类型增加选项网络故障"
    phone = next(f["name"] for f in manifest["spec"]["fields"] if f["label"] == "联系电话")
    with sqlite3.connect(repairs / "records.db") as db:  # the new rules hold in the database
        db.execute(f"INSERT INTO repair_record (repair_date, code, fault_type, {phone}) "
                   "VALUES ('2026-12-04', 'WX-2026-004', '网络故障', '13800000000')")
        with pytest.raises(sqlite3.IntegrityError, match="ck_repair_record_fault_type"):
            db.execute("INSERT INTO repair_record (repair_date, code, fault_type) VALUES ('2026-12-05', 'X', '火灾')")


def test_the_changed_apps_own_tests_pass(repairs):
    assert _change(repairs, "加一个完成日期，处理人改为选填，编号改为长文本") == 0
    tested = _python(repairs, "-m", "pytest", "-q", "-p", "no:cacheprovider")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    down = _python(repairs, "-m", "alembic", "downgrade", "-1")  # the revision also goes back, by hand
    assert down.returncode == 0, down.stderr
    assert _revision(repairs) == "0001" and _rows(repairs) == [r[:4] for r in RECORDS]


def test_removing_a_field_with_values_asks_for_force(repairs, capsys):
    before = _snapshot(repairs)
    assert _change(repairs, "删除备注") == 2
    err = capsys.readouterr().err
    assert "records 1, 3 have a value; removing the field loses them" in err and "Pass --force" in err
    assert _snapshot(repairs) == before
    assert _change(repairs, "删除备注", "--force") == 0
    with sqlite3.connect(repairs / "records.db") as db:
        assert "notes" not in {row[1] for row in db.execute("PRAGMA table_info(repair_record)")}
    with sqlite3.connect(repairs / "records.db.before-0002.bak") as db:  # the values are still in the backup
        assert db.execute("SELECT notes FROM repair_record ORDER BY id").fetchall() == [(r[4],) for r in RECORDS]


@pytest.mark.parametrize("words, message", [
    ("备注改为必填", "备注 (notes) would be required, but record 2 have no value"),
    ("故障类型去掉选项机械", "故障类型 (fault_type): record 2 ('机械故障'): not one of 电气故障, 软件故障, 其他"),
    ("编号改为整数", "编号 (code): records 1, 2, 3 ('WX-2026-001', 'WX-2026-002', 'WX-2026-003'): not a number"),
    ("加一个必填的负责人", "负责人 (fu_ze_ren) would be required, but records 1, 2, 3 have no value (it is new)"),
    ("处理人改为日期", "records 1, 2, 3 ('张三', '李四', '王五'): not a date (YYYY-MM-DD)"),
])
def test_a_change_the_records_cannot_survive_changes_nothing(repairs, capsys, words, message):
    before = _snapshot(repairs)
    assert _change(repairs, words, "--force") == 2
    err = capsys.readouterr().err
    assert "nothing was changed" in err and message in err, err
    assert _snapshot(repairs) == before


def test_a_failed_migration_leaves_the_database_and_the_files_as_they_were(repairs, capfd):
    with sqlite3.connect(repairs / "records.db") as db:  # a value the table's rules would refuse, written past them
        db.execute("PRAGMA ignore_check_constraints = ON")
        db.execute("INSERT INTO repair_record (repair_date, code, fault_type, handler) "
                   "VALUES ('2026-12-09', 'WX-2026-009', '火灾', '赵六')")
    before = _snapshot(repairs)
    assert _change(repairs, "加一个联系电话字段") != 0
    err = capfd.readouterr().err
    assert "the migration failed" in err and "the database is as it was" in err
    after = _snapshot(repairs)
    backups = [name for name in after if name.startswith("records.db.before-")]
    assert backups == ["records.db.before-0002.bak"]
    assert {name: data for name, data in after.items() if name not in backups} == before
    assert _revision(repairs) == "0001" and len(_rows(repairs)) == 4


def test_an_app_written_before_migrations_is_taken_up(tmp_path, capfd):
    """A database made by an app of the first wave (schema.sql's unnamed constraints, no alembic_version)
    and a manifest without history: the table is taken as revision 0001 and migrated."""
    folder = tmp_path / "old"
    files = build(spec=REPAIRS_ZH).files
    manifest = json.loads(files[MANIFEST])
    del manifest["history"], manifest["revision"]
    write_files(folder, {**files, MANIFEST: json.dumps(manifest, ensure_ascii=False)})
    with sqlite3.connect(folder / "records.db") as db:
        db.executescript("""CREATE TABLE repair_record (id INTEGER PRIMARY KEY AUTOINCREMENT,
            repair_date DATE NOT NULL, code VARCHAR(30) NOT NULL UNIQUE CHECK (length(code) <= 30),
            fault_type VARCHAR(4) NOT NULL CHECK (fault_type IN ('电气故障', '机械故障', '软件故障', '其他')),
            handler VARCHAR(200) NOT NULL CHECK (length(handler) <= 200), notes TEXT CHECK (length(notes) <= 5000));""")
        db.executemany("INSERT INTO repair_record (repair_date, code, fault_type, handler, notes) VALUES (?, ?, ?, ?, ?)",
                       RECORDS)
    assert _change(folder, "加一个联系电话字段") == 0
    assert "migrated from revision 0001 to 0002, 3 records kept" in capfd.readouterr().out
    assert _revision(folder) == "0002" and _rows(folder) == [r[:4] for r in RECORDS]


def test_a_spec_edited_by_hand_becomes_the_next_revision(repairs):
    manifest = json.loads((repairs / MANIFEST).read_text(encoding="utf-8"))
    manifest["spec"]["fields"].append({"name": "cost", "label": "费用", "type": "decimal", "min": 0})
    (repairs / "edited.json").write_text(json.dumps(manifest["spec"], ensure_ascii=False), encoding="utf-8")
    assert main(["scaffold", "--spec", str(repairs / "edited.json"), "--out", str(repairs), "--force"]) == 0
    assert (repairs / "migrations/versions/0002.py").is_file() and _revision(repairs) == "0002"
    assert _rows(repairs) == [r[:4] for r in RECORDS]
    again = _snapshot(repairs)  # the same spec again: the same files, no new revision
    assert main(["scaffold", "--spec", str(repairs / "edited.json"), "--out", str(repairs), "--force"]) == 0
    assert _snapshot(repairs) == again


def test_the_revisions_are_a_pure_function_of_the_history():
    first = load_spec(EVERY_TYPE).spec
    second = load_spec({**EVERY_TYPE, "fields": EVERY_TYPE["fields"][1:]}).spec
    history = continue_history(first_history(first), second, "remove title")
    files = render_app(second, history)
    assert files == render_app(second, history)
    manifest = json.loads(files[MANIFEST])
    assert load_history(manifest, second) == history
    assert "batch.drop_column('title')" in files["migrations/versions/0002.py"]
    compile(files["migrations/versions/0002.py"], "0002.py", "exec")


@pytest.mark.parametrize("args, message", [
    (["--change", "删除备注"], "--change needs the app"),
    (["记录维修", "--change", "删除备注", "--spec", "{app}/loopcoder-scaffold.json"], "leave out the description"),
    (["--change", "删除备注", "--spec", "{app}/README.md"], "cannot read the manifest"),
    (["--change", "删除备注", "--spec", "{app}/nothing.json"], "does not exist"),
    (["--change", "删除备注", "--spec", "{app}/loopcoder-scaffold.json", "--out", "{app}-elsewhere"],
     "is not the folder of --spec"),
    (["--change", "blah", "--spec", "{app}"], "not understood: 'blah'"),
])
def test_bad_change_arguments_are_refused(tmp_path, capsys, args, message):
    folder = tmp_path / "app"
    write_files(folder, build(spec=REPAIRS_ZH).files)
    (folder / "README.md").write_text("not json", encoding="utf-8")
    before = _snapshot(folder)
    assert main(["scaffold", *[a.format(app=folder) for a in args]]) == 2
    assert message in capsys.readouterr().err
    assert _snapshot(folder) == before


def test_an_app_written_over_another_continues_its_history(repairs):
    """What the LSP command and the Jupyter endpoint do with force over an app: the new spec is the next
    revision (its table keeps its name), the records are checked, and the app migrates them when it starts."""
    from loopcoder.lsp.features.scaffold import over_existing

    new = {**REPAIRS_ZH, "entity": "another_name", "fields": REPAIRS_ZH["fields"][:4]
           + [{"name": "cost", "label": "费用", "type": "decimal"}]}
    app, existed = over_existing(repairs, build(spec=new))
    assert existed and app.spec.entity == "repair_record"
    assert any("removed with its values (--force): 备注 (notes)" in note for note in app.notes)
    write_files(repairs, app.files, force=True)
    assert _python(repairs, "models.py").returncode == 0
    assert _revision(repairs) == "0002" and _rows(repairs) == [r[:4] for r in RECORDS]
    fresh, existed = over_existing(repairs.parent / "empty", build(spec=new))
    assert not existed and fresh.spec.entity == "another_name"
