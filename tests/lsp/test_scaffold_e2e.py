"""loopcoder.scaffoldForm end to end over stdio: the app arrives as one WorkspaceEdit of CreateFile and
TextDocumentEdit operations, which this client applies to disk as an editor would."""

import asyncio
import json
import shutil
import tempfile
from pathlib import Path

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pygls.uris import from_fs_path, to_fs_path
from pytest_lsp import LanguageClient

from loopcoder.lsp.features.scaffold import MANIFEST, build

from .features.scaffold.specs import REPAIRS_ZH
from .clients import language_server

pytestmark = pytest.mark.asyncio(loop_scope="module")
WORKSPACE = Path(tempfile.mkdtemp(prefix="loopcoder-scaffold-lsp-")).resolve()


@pytest.fixture(scope="module", autouse=True)
def _remove_workspace():
    yield
    shutil.rmtree(WORKSPACE, ignore_errors=True)


def _apply(params: types.ApplyWorkspaceEditParams) -> types.ApplyWorkspaceEditResult:
    """What an editor does with the edit: create each file, then insert its text."""
    for change in params.edit.document_changes:
        path = Path(to_fs_path(change.uri if isinstance(change, types.CreateFile) else change.text_document.uri))
        if isinstance(change, types.CreateFile):
            if path.exists() and not (change.options and change.options.overwrite):
                return types.ApplyWorkspaceEditResult(applied=False, failure_reason=f"{path} exists")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("", encoding="utf-8")
        else:
            (edit,) = change.edits
            assert edit.range.start == edit.range.end == types.Position(line=0, character=0)
            path.write_text(edit.new_text + path.read_text(encoding="utf-8"), encoding="utf-8")
    return types.ApplyWorkspaceEditResult(applied=True)


def _apply_edits(lsp_client: LanguageClient) -> None:
    lsp_client.applied_edits = []

    @lsp_client.feature(types.WORKSPACE_APPLY_EDIT)
    def apply_edit(params: types.ApplyWorkspaceEditParams) -> types.ApplyWorkspaceEditResult:
        lsp_client.applied_edits.append(params)
        return _apply(params)


client = language_server({"maxTokens": 8, "temperature": 0}, prepare=_apply_edits,
                         root_uri=from_fs_path(str(WORKSPACE)),
                         workspace_folders=[types.WorkspaceFolder(uri=from_fs_path(str(WORKSPACE)), name="work")])


async def _scaffold(client, argument):
    return await client.workspace_execute_command_async(types.ExecuteCommandParams(
        command="loopcoder.scaffoldForm", arguments=[argument]))


async def test_scaffold_from_a_spec_creates_every_file(client: LanguageClient):
    folder = WORKSPACE / f"repairs-{client.profile}"
    result = await asyncio.wait_for(_scaffold(client, {"description": "", "target": from_fs_path(str(folder)),
                                                       "spec": REPAIRS_ZH}), timeout=60)
    assert result["applied"] is True and result["folder"] == folder.as_uri()
    expected = build(spec=REPAIRS_ZH).files
    assert result["files"] == [(folder / name).as_uri() for name in expected]
    for name, text in expected.items():
        assert (folder / name).read_text(encoding="utf-8") == text, name
    manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    assert result["spec"] == manifest["spec"] and result["api"] == manifest["api"] == "/api/records"
    assert result["run"].endswith(manifest["run"].format(port=8000)) and " -m venv .venv && " in result["run"]
    edit = client.applied_edits[-1].edit
    kinds = [type(c).__name__ for c in edit.document_changes]
    assert kinds == ["CreateFile", "TextDocumentEdit"] * len(expected)


async def test_existing_files_need_force(client: LanguageClient):
    folder = WORKSPACE / f"twice-{client.profile}"
    argument = {"target": str(folder), "spec": REPAIRS_ZH}
    assert (await _scaffold(client, argument))["applied"] is True
    (folder / "app.py").write_text("# mine\n")
    with pytest.raises(JsonRpcException, match="already has app.py.*pass --force"):
        await _scaffold(client, argument)
    assert (folder / "app.py").read_text() == "# mine\n"
    assert (await _scaffold(client, {**argument, "force": True}))["applied"] is True
    assert (folder / "app.py").read_text() != "# mine\n"


# Every field's type is stated: no model is loaded (test_describe.py).
LEAVE = ("请做一个员工请假申请表单，包含申请人姓名、所属部门（研发部、市场部、财务部）、请假开始日期、结束日期、"
         "请假天数、请假原因，以及联系邮箱")


async def test_a_preview_writes_nothing_and_the_confirmed_spec_is_what_is_written(client: LanguageClient):
    folder = WORKSPACE / f"leave-{client.profile}"
    edits_before = len(client.applied_edits)
    preview = await asyncio.wait_for(_scaffold(client, {"description": LEAVE, "target": from_fs_path(str(folder)),
                                                        "preview": True}), timeout=60)
    assert not folder.exists() and len(client.applied_edits) == edits_before
    assert preview["preview"] is True and preview["folder"] == folder.as_uri()
    assert preview["summary"][0] == "员工请假申请 (table yuan_gong_qing_jia_shen_qing), 7 fields"
    assert preview["summary"][2] == "所属部门 (suo_shu_bu_men): choice: 研发部 | 市场部 | 财务部, required"
    assert preview["files"] == [(folder / name).as_uri() for name in build(spec=preview["spec"]).files]
    # Confirmed: the spec comes back (the description, now stale, is ignored) and is written as previewed.
    result = await asyncio.wait_for(_scaffold(client, {"description": "ignored, a spec is given",
                                                       "target": from_fs_path(str(folder)),
                                                       "spec": preview["spec"]}), timeout=60)
    assert result["applied"] is True and result["files"] == preview["files"] and result["spec"] == preview["spec"]
    assert json.loads((folder / MANIFEST).read_text(encoding="utf-8"))["spec"] == preview["spec"]


async def test_a_preview_refuses_a_full_folder_before_anything_is_confirmed(client: LanguageClient):
    folder = WORKSPACE / f"full-{client.profile}"
    folder.mkdir()
    (folder / "app.py").write_text("# mine\n")
    with pytest.raises(JsonRpcException, match="already has app.py"):
        await _scaffold(client, {"description": LEAVE, "target": str(folder), "preview": True})
    forced = await _scaffold(client, {"description": LEAVE, "target": str(folder), "preview": True, "force": True})
    assert forced["preview"] is True and (folder / "app.py").read_text() == "# mine\n"


@pytest.mark.parametrize("argument, message", [
    (None, "takes one argument"),
    ({"description": "a form", "target": str(WORKSPACE / "p"), "preview": "yes"}, '"preview" must be true or false'),
    ({"description": "a form", "target": str(WORKSPACE / "p"), "preview": 1}, '"preview" must be true or false'),
    ({"description": LEAVE, "target": "/tmp/elsewhere-loopcoder", "preview": True}, "is outside the workspace"),
    ({"target": str(WORKSPACE / "p"), "spec": {"title": "t", "fields": []}, "preview": True}, "invalid form spec"),
    ({"target": str(WORKSPACE / "q"), "spec": {"title": "t", "fields": [{"name": "a", "label": "A", "type": "choice"}]}},
     r"field 1 \(a\): a choice field needs `choices`"),
    ({"description": "a signup form"}, 'needs "target"'),
    ({"target": str(WORKSPACE / "x")}, 'needs "description"'),
    ({"description": "a form", "target": "https://example.com/app"}, "must be a file:// URI or a path"),
    ({"description": "a form", "target": "/tmp/elsewhere-loopcoder"}, "is outside the workspace"),
    ({"description": "a form", "target": str(WORKSPACE / ".." / "up")}, "contains '..'"),
    ({"description": "a form", "target": str(WORKSPACE / "y"), "force": "yes"}, '"force" must be true or false'),
    ({"target": str(WORKSPACE / "z"), "spec": {"title": "t", "fields": [{"name": "a", "label": "A", "type": "colour"}]}},
     r"field 1 \(a\).type: unknown type 'colour'"),
])
async def test_bad_arguments_are_errors(client: LanguageClient, argument, message):
    with pytest.raises(JsonRpcException, match=message):
        await client.workspace_execute_command_async(types.ExecuteCommandParams(
            command="loopcoder.scaffoldForm", arguments=None if argument is None else [argument]))


@pytest.mark.slow
async def test_scaffold_from_a_sentence_with_the_default_model(client: LanguageClient):
    if client.profile != "visual-studio-code":
        pytest.skip("one profile is enough for the model's minutes")
    folder = WORKSPACE / "from-sentence"
    result = await asyncio.wait_for(_scaffold(client, {
        "description": "A form to book a meeting room with date, room and organizer email",
        "target": from_fs_path(str(folder))}), timeout=600)
    assert result["applied"] is True and result["spec"]["fields"]
    assert (folder / MANIFEST).is_file() and (folder / "app.py").is_file()


async def test_an_editor_that_cannot_create_files_is_told_to_use_the_cli():
    from types import SimpleNamespace

    from loopcoder.engine.errors import LoopcoderError
    from loopcoder.lsp.server.scaffold_form import _check_creates_files

    for edit in (None, types.WorkspaceEditClientCapabilities(document_changes=True),
                 types.WorkspaceEditClientCapabilities(resource_operations=[types.ResourceOperationKind.Rename])):
        ls = SimpleNamespace(client_capabilities=types.ClientCapabilities(
            workspace=types.WorkspaceClientCapabilities(workspace_edit=edit)))
        with pytest.raises(LoopcoderError, match="cannot create files.*loopcoder scaffold"):
            _check_creates_files(ls)


async def test_a_preview_needs_no_create_capability(tmp_path):
    """An editor that cannot create files may still preview (and then be told to use the CLI to write)."""
    from types import SimpleNamespace

    from loopcoder.engine.errors import LoopcoderError
    from loopcoder.lsp.server.scaffold_form import scaffold_command

    async def in_worker(ticket, work):
        return work()

    ls = SimpleNamespace(
        client_capabilities=types.ClientCapabilities(workspace=types.WorkspaceClientCapabilities(
            workspace_edit=types.WorkspaceEditClientCapabilities(document_changes=True))),
        workspace=SimpleNamespace(folders={}, root_path=str(tmp_path)), settings=None, engine=None,
        requests=SimpleNamespace(begin=lambda key: SimpleNamespace(cancelled=lambda: False)), in_worker=in_worker)
    argument = {"description": LEAVE, "target": str(tmp_path / "app"), "preview": True}
    preview = await scaffold_command(ls, argument)
    assert preview["preview"] is True and len(preview["summary"]) == 8 and not (tmp_path / "app").exists()
    with pytest.raises(LoopcoderError, match="cannot create files"):
        await scaffold_command(ls, {"target": str(tmp_path / "app"), "spec": preview["spec"]})
