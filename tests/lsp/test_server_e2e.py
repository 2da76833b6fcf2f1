"""The language server end to end: `loopcoder lsp` over stdio, driven as Neovim and VS Code drive it.

One server process per client profile (module-scoped fixture), each loading the real
default model once; small maxTokens keeps every completion well under a second.
"""

import asyncio

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pytest_lsp import LanguageClient

from .clients import language_server
from .clients import open_document as _open

pytestmark = pytest.mark.asyncio(loop_scope="module")

ADD = 'def add(a, b):\n    """Return the sum of a and b."""\n    return \n'
AFTER_RETURN = types.Position(line=2, character=len("    return "))


client = language_server({"maxTokens": 8, "temperature": 0})


async def _inline(client: LanguageClient, uri: str, position: types.Position,
                  trigger=types.InlineCompletionTriggerKind.Invoked) -> types.InlineCompletionList | None:
    return await client.text_document_inline_completion_async(types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri), position=position,
        context=types.InlineCompletionContext(trigger_kind=trigger)))


def _edit(uri: str, version: int, start: tuple[int, int], end: tuple[int, int], text: str):
    rng = types.Range(start=types.Position(*start), end=types.Position(*end))
    return types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
        content_changes=[types.TextDocumentContentChangePartial(range=rng, text=text)])


async def test_initialize_negotiates_encoding_and_advertises_features(client: LanguageClient):
    caps = client.init_result.capabilities
    offered = client.capabilities.general.position_encodings if client.capabilities.general else None
    assert caps.position_encoding == ("utf-8" if offered and "utf-8" in offered else "utf-16")
    assert caps.inline_completion_provider is not None and caps.completion_provider is not None
    assert caps.text_document_sync.change == types.TextDocumentSyncKind.Incremental


@pytest.mark.slow
async def test_inline_completion_completes_the_return(client: LanguageClient):
    uri = _open(client, "add.py", ADD)
    for trigger in (types.InlineCompletionTriggerKind.Automatic, types.InlineCompletionTriggerKind.Invoked):
        result = await _inline(client, uri, AFTER_RETURN, trigger)
        assert result is not None and len(result.items) == 1
        item = result.items[0]
        assert "a" in item.insert_text, item.insert_text  # the model writes `a + b`
        assert item.range == types.Range(start=AFTER_RETURN, end=AFTER_RETURN)


@pytest.mark.slow
async def test_completion_fallback_gives_one_item(client: LanguageClient):
    uri = _open(client, "add_fallback.py", ADD)
    result = await client.text_document_completion_async(types.CompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri), position=AFTER_RETURN))
    assert isinstance(result, types.CompletionList) and len(result.items) == 1
    assert "a" in result.items[0].text_edit.new_text


@pytest.mark.slow
async def test_incremental_changes_reach_the_model(client: LanguageClient):
    uri = _open(client, "mul.py", "def add(a, b):\n    return \n")
    client.text_document_did_change(_edit(uri, 2, (0, 4), (0, 7), "mul"))  # add -> mul
    client.text_document_did_change(_edit(uri, 3, (0, 8), (0, 12), "x, y"))  # (a, b) -> (x, y)
    result = await _inline(client, uri, types.Position(line=1, character=11))
    assert result is not None and "x" in result.items[0].insert_text, result


@pytest.mark.slow
async def test_positions_count_in_the_negotiated_encoding(client: LanguageClient):
    line = "    s = '😀' + "
    uri = _open(client, "emoji.py", f"def f():\n{line}\n")
    encoding = client.init_result.capabilities.position_encoding
    end = len(line.encode("utf-8")) if encoding == "utf-8" else len(line.encode("utf-16-le")) // 2
    await _inline(client, uri, types.Position(line=1, character=end))  # must not be an error
    inside_the_emoji = types.Position(line=1, character=len("    s = '") + 1)  # 2 UTF-16 units, 4 UTF-8 bytes
    with pytest.raises(JsonRpcException, match="falls inside a character"):
        await _inline(client, uri, inside_the_emoji)


@pytest.mark.slow
async def test_bad_positions_and_unknown_documents_are_errors_not_crashes(client: LanguageClient):
    uri = _open(client, "errors.py", ADD)
    with pytest.raises(JsonRpcException, match="past the end of the document"):
        await _inline(client, uri, types.Position(line=99, character=0))
    with pytest.raises(JsonRpcException, match="is not open"):
        await _inline(client, "file:///work/never-opened.py", AFTER_RETURN)
    result = await _inline(client, uri, AFTER_RETURN)  # the server is still alive and well
    assert result is not None and result.items


@pytest.mark.slow
async def test_a_newer_request_supersedes_an_older_one(client: LanguageClient):
    uri = _open(client, "race.py", ADD)
    older = asyncio.ensure_future(_inline(client, uri, AFTER_RETURN))
    newer = asyncio.ensure_future(_inline(client, uri, AFTER_RETURN))
    assert await older is None  # typed past: an empty answer, not a stale one
    result = await newer
    assert result is not None and result.items


@pytest.mark.slow
async def test_a_5mb_document_answers_in_time(client: LanguageClient):
    text = ADD + "x = 1  # padding\n" * (5 * 1024 * 1024 // 17)
    uri = _open(client, "big.py", text)
    result = await asyncio.wait_for(_inline(client, uri, AFTER_RETURN), timeout=60)
    assert result is not None and result.items
    client.text_document_did_close(types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri)))


@pytest.mark.slow
async def test_cancel_request_answers_cancelled_and_the_server_goes_on(client: LanguageClient):
    # Seconds of prefill before the answer (and pre-warming off), so the cancel always
    # arrives while the work runs; a short request may rightly answer before it.
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings={"prewarm": False}))
    head = "".join(f"def f{i}(x):\n    return x * {i} + {i % 7}\n\n" for i in range(120))
    uri = _open(client, "cancel.py", head + ADD)
    at_return = types.Position(line=head.count("\n") + 2, character=len("    return "))
    params = types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri), position=at_return,
        context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Invoked))
    msg_id = f"cancel-{uri}"
    # pytest-lsp sends a request when its coroutine first runs: let it, then cancel.
    pending = asyncio.ensure_future(
        client.protocol.send_request_async(types.TEXT_DOCUMENT_INLINE_COMPLETION, params, msg_id=msg_id))
    await asyncio.sleep(0)
    client.cancel_request(types.CancelParams(id=msg_id))
    with pytest.raises(JsonRpcException, match="cancel"):
        await pending
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings={"prewarm": True}))
    result = await _inline(client, uri, at_return)
    assert result is not None and result.items
