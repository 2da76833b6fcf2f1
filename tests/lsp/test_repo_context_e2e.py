"""Repository context end to end over stdio: `loopcoder lsp` indexes a two-file workspace opened as a
workspace folder, a completion in one file is given the other's definition (loopcoder.repoContext shows
it), edits and saves follow into the index, and a completion with the context is answered."""

import asyncio
import shutil
import tempfile
import time
from pathlib import Path

import pytest
from lsprotocol import types
from pygls.uris import from_fs_path
from pytest_lsp import LanguageClient

from .clients import language_server

pytestmark = pytest.mark.asyncio(loop_scope="module")
WORKSPACE = Path(tempfile.mkdtemp(prefix="loopcoder-repo-context-")).resolve()
(WORKSPACE / "billing").mkdir()
(WORKSPACE / "billing" / "__init__.py").write_text("")
(WORKSPACE / "billing" / "tax.py").write_text(
    'def vat_amount(net_cents: int, rate_percent: float = 20.0) -> int:\n'
    '    """The VAT on a net amount in cents, rounded half up."""\n'
    '    return int(net_cents * rate_percent / 100 + 0.5)\n')
(WORKSPACE / ".env").write_text("STRIPE_KEY=sk_live_not_for_prompts\n")
INVOICE = "from billing.tax import vat_amount\n\n\ndef invoice_total(net_cents):\n    return net_cents + vat_amount("


@pytest.fixture(scope="module", autouse=True)
def _remove_workspace():
    yield
    shutil.rmtree(WORKSPACE, ignore_errors=True)


client = language_server({"maxTokens": 4, "temperature": 0, "repoContextTokens": 512},
                         editors=("visual-studio-code",), root_uri=from_fs_path(str(WORKSPACE)),
                         workspace_folders=[types.WorkspaceFolder(uri=from_fs_path(str(WORKSPACE)), name="ws")])


async def _context(client: LanguageClient, uri: str, line: int, character: int) -> dict:
    return await client.workspace_execute_command_async(types.ExecuteCommandParams(
        command="loopcoder.repoContext", arguments=[{"uri": uri, "position": {"line": line, "character": character}}]))


async def _indexed(client: LanguageClient, uri: str, line: int, character: int, wanted: str) -> dict:
    """The context once the background index has what `wanted` names (it starts at `initialized`)."""
    deadline = time.monotonic() + 60
    while True:
        found = await _context(client, uri, line, character)
        if wanted in found["text"] or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.2)


async def test_a_completion_is_given_the_other_files_definition(client: LanguageClient):
    uri = from_fs_path(str(WORKSPACE / "invoice.py"))
    (WORKSPACE / "invoice.py").write_text(INVOICE)
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        text_document=types.TextDocumentItem(uri=uri, language_id="python", version=1, text=INVOICE)))
    found = await _indexed(client, uri, 4, len(INVOICE.split("\n")[4]), "def vat_amount")
    assert "def vat_amount(net_cents: int, rate_percent: float = 20.0) -> int:" in found["text"], found
    assert "The VAT on a net amount" in found["text"] and "return int(" not in found["text"]  # never the body
    assert found["text"].endswith("invoice.py\n") and found["files"] == ["billing/tax.py"]
    assert "sk_live" not in found["text"] and found["stats"]["ready"] is True
    answer = await client.text_document_inline_completion_async(types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(line=4, character=36),
        context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Invoked)))
    assert answer is None or answer.items[0].insert_text  # answered, with the context in its prompt


async def test_a_saved_file_and_a_watched_change_follow_into_the_index(client: LanguageClient):
    (WORKSPACE / "billing" / "discounts.py").write_text(
        'def loyalty_discount(years: int) -> float:\n    """A tenth off after five years."""\n    return 0.1\n')
    client.workspace_did_change_watched_files(types.DidChangeWatchedFilesParams(changes=[types.FileEvent(
        uri=from_fs_path(str(WORKSPACE / "billing" / "discounts.py")), type=types.FileChangeType.Created)]))
    text = INVOICE + "net_cents)\n\n\ndef with_loyalty(net_cents, years):\n    return net_cents * (1 - loyalty_discount("
    uri = from_fs_path(str(WORKSPACE / "invoice.py"))
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
        content_changes=[types.TextDocumentContentChangeWholeDocument(text=text)]))
    last = text.split("\n")[-1]
    found = await _indexed(client, uri, len(text.split("\n")) - 1, len(last), "def loyalty_discount")
    assert "def loyalty_discount(years: int) -> float:" in found["text"], found


async def test_bad_arguments_are_errors(client: LanguageClient):
    from pygls.exceptions import JsonRpcException

    with pytest.raises(JsonRpcException, match="takes one argument"):
        await client.workspace_execute_command_async(types.ExecuteCommandParams(
            command="loopcoder.repoContext", arguments=["file:///x.py"]))
    with pytest.raises(JsonRpcException, match="position"):
        await client.workspace_execute_command_async(types.ExecuteCommandParams(
            command="loopcoder.repoContext", arguments=[{"uri": "file:///x.py", "position": {"line": "1"}}]))
