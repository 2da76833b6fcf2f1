"""Code actions end to end over stdio with the real default model: review as diagnostics with fixes,
explain, hint, edit by instruction, and bad arguments to the scaffold command
(tests/lsp/test_scaffold_e2e.py drives it in full).

The tiny default model's findings are not predictable, so these tests check what must hold
for any answer: every finding is a diagnostic on a line of the file, every fix is a
quickfix whose edit replaces that line, and nothing the model says can break the server.
"""

import asyncio
from pathlib import Path

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pytest_lsp import LanguageClient

from loopcoder.lsp.cli.scripted_client import read_code_actions_right

from .clients import language_server
from .clients import open_document as _open

pytestmark = pytest.mark.asyncio(loop_scope="module")

FLASK = (Path(__file__).parents[2] / "docs" / "examples" / "flask_app.py").read_text()
PREFIX_SUMS = '''def range_sums(values, queries):
    """For each (i, j) in queries, the sum of values[i:j]."""
    answers = []
    for i, j in queries:
        answers.append(sum(values[i:j]))
    return answers
'''


def _record_edits(lsp_client: LanguageClient) -> None:
    lsp_client.applied_edits = []

    @lsp_client.feature(types.WORKSPACE_APPLY_EDIT)
    def apply_edit(params: types.ApplyWorkspaceEditParams) -> types.ApplyWorkspaceEditResult:
        lsp_client.applied_edits.append(params)
        return types.ApplyWorkspaceEditResult(applied=True)

    read_code_actions_right(lsp_client.protocol._converter)


client = language_server({"maxTokens": 8, "actionTokens": 256, "temperature": 0}, prepare=_record_edits)


def _range(l1, c1, l2, c2) -> types.Range:
    return types.Range(start=types.Position(line=l1, character=c1), end=types.Position(line=l2, character=c2))


def _as_dict(r: types.Range) -> dict:
    return {"start": {"line": r.start.line, "character": r.start.character},
            "end": {"line": r.end.line, "character": r.end.character}}


async def _actions(client, uri, rng, only=None, diagnostics=()):
    return await client.text_document_code_action_async(types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri=uri), range=rng,
        context=types.CodeActionContext(diagnostics=list(diagnostics), only=only)))


async def _command(client, name, argument):
    return await client.workspace_execute_command_async(types.ExecuteCommandParams(command=name, arguments=[argument]))


async def test_server_advertises_code_actions_and_commands(client: LanguageClient):
    caps = client.init_result.capabilities
    assert caps.code_action_provider is not None
    assert {"loopcoder.review", "loopcoder.explain", "loopcoder.hint", "loopcoder.edit",
            "loopcoder.scaffoldForm"} <= set(caps.execute_command_provider.commands)
    if client.capabilities.notebook_document is not None:  # pygls advertises it to clients that have notebooks
        assert caps.notebook_document_sync.notebook_selector[0].cells[0].language == "python"


async def test_code_actions_offer_review_explain_and_hint(client: LanguageClient):
    uri = _open(client, "offer.py", FLASK)
    actions = await _actions(client, uri, _range(6, 0, 10, 0))
    by_title = {a.title: a for a in actions}
    review = by_title["loopcoder: Review"]
    assert review.kind == "refactor.loopcoder.review"
    assert review.command.command == "loopcoder.review"
    assert list(review.command.arguments) == [{"uri": uri, "range": _as_dict(_range(6, 0, 10, 0))}]
    assert {"loopcoder: Explain", "loopcoder: Hint"} <= set(by_title)
    only_review = await _actions(client, uri, _range(0, 0, 0, 0), only=["refactor.loopcoder.review"])
    assert [a.title for a in only_review] == ["loopcoder: Review"]
    assert not await _actions(client, uri, _range(0, 0, 0, 0), only=[types.CodeActionKind.QuickFix])
    with pytest.raises(JsonRpcException, match="past the end of the document"):
        await _actions(client, uri, _range(0, 0, 99, 0))


@pytest.mark.slow
async def test_review_publishes_diagnostics_with_fixes(client: LanguageClient):
    uri = _open(client, "handler.py", FLASK)
    lines = FLASK.splitlines()
    result = await asyncio.wait_for(_command(client, "loopcoder.review", {"uri": uri}), timeout=120)
    findings = result["findings"]
    assert isinstance(findings, list)
    await _wait_for(lambda: uri in client.diagnostics)
    diagnostics = client.diagnostics[uri]
    assert len(diagnostics) == len(findings)
    for d, f in zip(sorted(diagnostics, key=lambda d: d.range.start.line), sorted(findings, key=lambda f: f["line"])):
        assert d.source == "loopcoder" and d.code == f["category"] and d.message == f["message"]
        assert 0 <= d.range.start.line == d.range.end.line < len(lines)
        if f["replacement"] is None:
            continue
        fixes = await _actions(client, uri, d.range, diagnostics=[d])
        quick = [a for a in fixes if a.kind == types.CodeActionKind.QuickFix]
        assert quick and quick[0].edit is not None
        edits = _edits_of(quick[0].edit, uri)
        assert edits[0].new_text == f["replacement"] and edits[0].range.start.line == d.range.start.line
    if client.capabilities.window and client.capabilities.window.work_done_progress:
        assert any(isinstance(v, types.WorkDoneProgressEnd) for reports in client.progress_reports.values() for v in reports)


def _edits_of(edit: types.WorkspaceEdit, uri: str) -> list[types.TextEdit]:
    if edit.document_changes:
        return [e for change in edit.document_changes if change.text_document.uri == uri for e in change.edits]
    return list(edit.changes[uri])


async def _wait_for(condition, timeout: float = 10, what=lambda: "") -> None:
    for _ in range(int(timeout / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting: {what()}")


@pytest.mark.slow
async def test_diagnostics_follow_edits_and_clear_on_close(client: LanguageClient):
    uri = _open(client, "follow.py", FLASK)
    await asyncio.wait_for(_command(client, "loopcoder.review", {"uri": uri}), timeout=120)
    await _wait_for(lambda: uri in client.diagnostics)
    before = sorted(d.range.start.line for d in client.diagnostics[uri])
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
        content_changes=[types.TextDocumentContentChangePartial(range=_range(0, 0, 0, 0), text="import os\n")]))
    if before:
        await _wait_for(lambda: sorted(d.range.start.line for d in client.diagnostics[uri]) == [n + 1 for n in before],
                        what=lambda: f"diagnostics on lines {before} then {[d.range for d in client.diagnostics[uri]]}")
    client.text_document_did_close(types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri)))
    if before:
        await _wait_for(lambda: not client.diagnostics[uri])


@pytest.mark.slow
async def test_hint_asks_without_code(client: LanguageClient):
    uri = _open(client, "sums.py", PREFIX_SUMS)
    result = await asyncio.wait_for(_command(client, "loopcoder.hint", {"uri": uri, "range": _as_dict(_range(0, 0, 6, 0))}), 120)
    assert "```" not in result["hint"]
    assert any(m.message.startswith("Hint: ") for m in client.messages)


@pytest.mark.slow
async def test_explain_shows_markdown(client: LanguageClient):
    uri = _open(client, "explain.py", PREFIX_SUMS)
    result = await asyncio.wait_for(_command(client, "loopcoder.explain", {"uri": uri}), 120)
    assert result["markdown"].strip()
    shown = client.capabilities.window and client.capabilities.window.show_document
    if shown:  # a document the client opened
        assert result["uri"].endswith(".md") and client.shown_documents[-1].uri == result["uri"]
    else:
        assert result["uri"] is None and any(result["markdown"] in m.message for m in client.messages)


@pytest.mark.slow
async def test_edit_applies_a_workspace_edit_to_the_selection(client: LanguageClient):
    uri = _open(client, "edit.py", PREFIX_SUMS)
    selection = _range(3, 0, 5, 0)
    result = await asyncio.wait_for(_command(client, "loopcoder.edit", {
        "uri": uri, "range": _as_dict(selection), "instruction": "add a comment above the loop"}), 120)
    assert result["applied"] is True and result["newText"].endswith("\n")
    applied = client.applied_edits[-1]
    edits = _edits_of(applied.edit, uri)
    assert len(edits) == 1 and edits[0].range == selection and edits[0].new_text == result["newText"]


@pytest.mark.parametrize("name, argument, message", [
    ("loopcoder.review", None, "takes one argument"),
    ("loopcoder.review", {"range": None}, "needs \"uri\""),
    ("loopcoder.review", {"uri": "file:///work/never.py"}, "is not open"),
    ("loopcoder.hint", {"uri": "file:///work/bad.py", "range": {"start": 1}}, "range must look like"),
    ("loopcoder.explain", {"uri": "file:///work/bad.py", "range": _as_dict(_range(0, 0, 50, 0))}, "past the end"),
    ("loopcoder.edit", {"uri": "file:///work/bad.py", "range": _as_dict(_range(0, 0, 1, 0))}, "non-empty instruction"),
    ("loopcoder.scaffoldForm", {"description": "a signup form"}, "needs \"target\""),
])
async def test_bad_commands_are_errors_and_the_server_goes_on(client: LanguageClient, name, argument, message):
    _open(client, "bad.py", PREFIX_SUMS)
    with pytest.raises(JsonRpcException, match=message):
        await client.workspace_execute_command_async(types.ExecuteCommandParams(
            command=name, arguments=None if argument is None else [argument]))
    actions = await _actions(client, "file:///work/bad.py", _range(0, 0, 0, 0))
    assert actions  # still serving
