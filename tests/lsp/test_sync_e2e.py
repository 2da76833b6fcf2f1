"""Keeping in sync under pressure, end to end over stdio: a storm of edits, notebooks, settings changes,
a file without a final newline, and a document that lost sync."""

import asyncio
import time

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pytest_lsp import LanguageClient

from .clients import language_server, open_document

pytestmark = pytest.mark.asyncio(loop_scope="module")


client = language_server({"maxTokens": 4, "temperature": 0}, editors=("visual-studio-code",))


def _rss_kib(client: LanguageClient) -> int:
    with open(f"/proc/{client._server.pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def _inline_params(uri: str, line: int, character: int) -> types.InlineCompletionParams:
    return types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(line=line, character=character),
        context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Automatic))


@pytest.mark.slow
async def test_a_storm_of_edits_with_completions_interleaved(client: LanguageClient):
    """200 didChange a second for two seconds, a completion after every fifth one.

    Each completion asks for the end of the line as it is after the latest change. None
    may fail (the document stays in sync through the storm, no change is refused), the
    latest is answered, and older ones are superseded rather than all computed.
    """
    head = "def total(values):\n    result = 0\n    for v in values:\n        result = result + "
    uri = "file:///work/storm.py"
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        text_document=types.TextDocumentItem(uri=uri, language_id="python", version=1, text=head + "\n")))
    await client.text_document_inline_completion_async(_inline_params(uri, 3, len(head.split("\n")[3])))  # warm
    rss_before = _rss_kib(client)
    line = head.split("\n")[3]
    pending = []
    started = time.monotonic()
    for i in range(400):
        position = types.Position(line=3, character=len(line))
        line += "v" if i % 2 else " "
        client.text_document_did_change(types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=i + 2),
            content_changes=[types.TextDocumentContentChangePartial(range=types.Range(start=position, end=position),
                                                                    text=line[-1])]))
        if i % 5 == 4:
            pending.append(asyncio.ensure_future(client.text_document_inline_completion_async(_inline_params(uri, 3, len(line)))))
        await asyncio.sleep(max(0.0, started + (i + 1) / 200 - time.monotonic()))  # 200 changes a second
    results = await asyncio.wait_for(asyncio.gather(*pending, return_exceptions=True), timeout=120)
    errors = [r for r in results if isinstance(r, Exception)]
    assert not errors, errors[:3]  # a refused change would show here as "out of sync"
    assert results[-1] is not None and results[-1].items  # the latest request is answered
    superseded = sum(r is None for r in results[:-1])
    assert superseded > 0  # older requests were cancelled, not all computed
    # The server is alive, in step, and did not grow with the storm.
    final = await client.text_document_inline_completion_async(_inline_params(uri, 3, len(line)))
    assert final is not None
    assert _rss_kib(client) - rss_before < 200 * 1024, (rss_before, _rss_kib(client))


@pytest.mark.slow
async def test_a_notebook_cell_completes_with_the_cells_above(client: LanguageClient):
    nb = "file:///work/analysis.ipynb"
    cells = [("cell1", "def greet(name):\n    return 'Hello, ' + name\n", types.NotebookCellKind.Code),
             ("cell2", "# Greeting people", types.NotebookCellKind.Markup),
             ("cell3", "message = gre", types.NotebookCellKind.Code)]
    client.notebook_document_did_open(types.DidOpenNotebookDocumentParams(
        notebook_document=types.NotebookDocument(uri=nb, notebook_type="jupyter-notebook", version=1, cells=[
            types.NotebookCell(kind=kind, document=f"{nb}#{name}") for name, _, kind in cells]),
        cell_text_documents=[types.TextDocumentItem(uri=f"{nb}#{name}", language_id="python" if kind == 1 else "markdown",
                                                    version=1, text=text) for name, text, kind in cells]))
    result = await client.text_document_inline_completion_async(_inline_params(f"{nb}#cell3", 0, len("message = gre")))
    assert result is not None and result.items[0].insert_text.startswith("et"), result  # greet(...) from cell 1
    # A new cell inserted at the top, then an edit in it: both reach the server.
    new = types.TextDocumentItem(uri=f"{nb}#cell0", language_id="python", version=1, text="import os\n")
    client.notebook_document_did_change(types.DidChangeNotebookDocumentParams(
        notebook_document=types.VersionedNotebookDocumentIdentifier(uri=nb, version=2),
        change=types.NotebookDocumentChangeEvent(cells=types.NotebookDocumentCellChanges(
            structure=types.NotebookDocumentCellChangeStructure(
                array=types.NotebookCellArrayChange(start=0, delete_count=0, cells=[
                    types.NotebookCell(kind=types.NotebookCellKind.Code, document=new.uri)]),
                did_open=[new]),
            text_content=[types.NotebookDocumentCellContentChanges(
                document=types.VersionedTextDocumentIdentifier(uri=f"{nb}#cell3", version=2),
                changes=[types.TextDocumentContentChangePartial(
                    range=types.Range(start=types.Position(line=0, character=13), end=types.Position(line=0, character=13)),
                    text="et(")])]))))
    result = await client.text_document_inline_completion_async(_inline_params(f"{nb}#cell3", 0, len("message = greet(")))
    assert result is None or result.items  # answered, from the edited cell (an old one would be past the line end)
    # A change to a notebook that is not open is reported (by pygls, which applies notebook changes
    # to its own workspace before our handler runs), and the server goes on.
    client.notebook_document_did_change(types.DidChangeNotebookDocumentParams(
        notebook_document=types.VersionedNotebookDocumentIdentifier(uri="file:///work/nope.ipynb", version=2),
        change=types.NotebookDocumentChangeEvent()))
    await _wait_for_message(client, "nope.ipynb")
    client.notebook_document_did_close(types.DidCloseNotebookDocumentParams(
        notebook_document=types.NotebookDocumentIdentifier(uri=nb),
        cell_text_documents=[types.TextDocumentIdentifier(uri=f"{nb}#{n}") for n in ("cell0", "cell1", "cell2", "cell3")]))
    with pytest.raises(JsonRpcException, match="is not open"):
        await client.text_document_inline_completion_async(_inline_params(f"{nb}#cell3", 0, 0))


async def _wait_for_message(client: LanguageClient, fragment: str, timeout: float = 10) -> types.ShowMessageParams:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for message in client.messages:
            if fragment in message.message:
                return message
        await asyncio.sleep(0.05)
    raise AssertionError(f"no window/showMessage with {fragment!r}: {[m.message for m in client.messages]}")


@pytest.mark.slow
async def test_settings_change_at_run_time(client: LanguageClient):
    uri = "file:///work/settings.py"
    client.text_document_did_open(types.DidOpenTextDocumentParams(text_document=types.TextDocumentItem(
        uri=uri, language_id="python", version=1, text="def add(a, b):\n    return \n")))
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings={"loopcoder": {"maxTokens": 1}}))
    result = await client.text_document_inline_completion_async(_inline_params(uri, 1, 11))
    assert result is not None and len(result.items[0].insert_text) <= 8  # one token
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings={"maxTokens": "many"}))
    await _wait_for_message(client, "maxTokens must be int")
    # Pulled settings: null in the notification, the values from workspace/configuration.
    client.set_configuration({"maxTokens": 2, "contextTokens": 1024}, section="loopcoder")
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings=None))
    result = await client.text_document_inline_completion_async(_inline_params(uri, 1, 11))
    assert result is not None  # the server kept serving through a bad settings change


# -- a file without a final newline, and a document that lost sync -------------------------

# No final newline: Neovim edits below the last line with ranges one line past it.
AREA = 'def area(width, height):\n    """Return the area of a rectangle."""'


editor = language_server({"maxTokens": 4, "temperature": 0})


def _changes(uri: str, version: int, *changes: tuple[tuple[int, int], tuple[int, int], str]):
    return types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
        content_changes=[types.TextDocumentContentChangePartial(
            range=types.Range(start=types.Position(*start), end=types.Position(*end)), text=text)
            for start, end, text in changes])


def _sync_messages(client: LanguageClient, name: str) -> list[str]:
    return [m.message for m in client.messages if name in m.message]


@pytest.mark.slow
async def test_typing_below_the_last_line_of_a_file_without_final_newline(editor: LanguageClient):
    """What Neovim sends for `Go    return ` at the end of AREA: first the newline it thinks
    the file ends with, (1, 41)-(2, 0), replaced by two; then the typing on the new line."""
    uri = open_document(editor, "no_final_newline.py", AREA)
    typed = "    return "
    editor.text_document_did_change(_changes(
        uri, 2, ((1, 41), (2, 0), "\n\n"), *(((2, i), (2, i), ch) for i, ch in enumerate(typed))))
    result = await editor.text_document_inline_completion_async(_inline_params(uri, 2, len(typed)))
    assert result is not None and result.items, result
    assert _sync_messages(editor, "no_final_newline.py") == []
    # A character past the end of a line defaults back to the line's length (LSP, Position).
    result = await editor.text_document_inline_completion_async(_inline_params(uri, 2, len(typed) + 5))
    assert result is None or result.items


@pytest.mark.slow
async def test_a_change_that_cannot_apply_is_reported_once_then_requests_fail_until_reopen(editor: LanguageClient):
    uri = open_document(editor, "lost.py", AREA)
    editor.text_document_did_change(_changes(uri, 2, ((0, 8), (0, 3), "x")))  # ends before it starts
    editor.text_document_did_change(_changes(uri, 3, ((9, 0), (9, 0), "y")))  # far past the end: already out of sync
    editor.text_document_did_change(_changes(uri, 4, ((0, 0), (0, 0), "# ")))  # a good one no longer helps
    for ask in (lambda: editor.text_document_inline_completion_async(_inline_params(uri, 1, 4)),
                lambda: editor.text_document_completion_async(types.CompletionParams(
                    text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(line=1, character=4))),
                lambda: editor.text_document_code_action_async(types.CodeActionParams(
                    text_document=types.TextDocumentIdentifier(uri=uri),
                    range=types.Range(start=types.Position(line=0, character=0), end=types.Position(line=0, character=0)),
                    context=types.CodeActionContext(diagnostics=[])))):
        with pytest.raises(JsonRpcException, match="lost.py is out of sync.*ends before it starts"):
            await ask()
    messages = [m for m in editor.messages if "lost.py" in m.message]
    assert len(messages) == 1, [m.message for m in messages]
    assert messages[0].type in (types.MessageType.Error, types.MessageType.Warning)
    assert "reopen" in messages[0].message and ":w then :e" in messages[0].message
    # Neovim's :e sends didClose then didOpen; the document is in step again.
    editor.text_document_did_close(types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri)))
    open_document(editor, "lost.py", AREA + "\n    return ")
    result = await editor.text_document_inline_completion_async(_inline_params(uri, 2, 11))
    assert result is not None and result.items, result
    assert len(_sync_messages(editor, "lost.py")) == 1


@pytest.mark.slow
async def test_a_full_text_change_brings_a_lost_document_back(editor: LanguageClient):
    uri = open_document(editor, "resent.py", AREA)
    editor.text_document_did_change(_changes(uri, 2, ((7, 0), (7, 0), "z")))  # two lines past the end
    with pytest.raises(JsonRpcException, match="resent.py is out of sync.*past the end of the document"):
        await editor.text_document_inline_completion_async(_inline_params(uri, 1, 4))
    editor.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=3),
        content_changes=[types.TextDocumentContentChangeWholeDocument(text=AREA + "\n    return ")]))
    result = await editor.text_document_inline_completion_async(_inline_params(uri, 2, 11))
    assert result is not None and result.items, result
    assert len(_sync_messages(editor, "resent.py")) == 1
