"""Two editors' language servers on one engine daemon: one model, shared warm text, no harm from a crash."""

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest
from lsprotocol import types

from loopcoder.engine.serving.client import DaemonClient
from loopcoder.engine.serving.socket_file import TRANSPORT_ENV
from loopcoder.lsp.cli.scripted_client import ScriptedClient

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="function")]

TEXT = "".join(f"def scale_{i}(x):\n    return x * {i}\n\n" for i in range(60)) + "def add(a, b):\n    return "


async def start_editor(name: str, socket_path: Path) -> ScriptedClient:
    client = ScriptedClient(name)
    await client.start_io(sys.executable, "-m", "loopcoder.lsp.cli", "lsp", "--socket", str(socket_path))
    await asyncio.wait_for(client.initialize_async(types.InitializeParams(
        capabilities=types.ClientCapabilities(), process_id=os.getpid(),
        initialization_options={"maxTokens": 8, "temperature": 0})), 60)
    client.initialized(types.InitializedParams())
    return client


async def complete(client: ScriptedClient, uri: str) -> str:
    lines = TEXT.split("\n")
    result = await asyncio.wait_for(client.text_document_inline_completion_async(types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri),
        position=types.Position(line=len(lines) - 1, character=len(lines[-1])),
        context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Invoked))), 300)
    items = result.items if isinstance(result, types.InlineCompletionList) else result
    return items[0].insert_text if items else ""


def open_doc(client: ScriptedClient, uri: str) -> None:
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        text_document=types.TextDocumentItem(uri=uri, language_id="python", version=1, text=TEXT)))


async def stop(client: ScriptedClient) -> None:
    server = client._server
    if server is not None and server.returncode is None:
        try:
            await asyncio.wait_for(client.shutdown_async(None), 20)
            client.exit(None)
            await asyncio.wait_for(server.wait(), 20)
        except (asyncio.TimeoutError, ConnectionError, RuntimeError):
            server.kill()
    await client.stop()


@pytest.mark.parametrize("transport", ["unix", "tcp"])
async def test_two_editors_share_one_engine_and_survive_each_other(tmp_path, monkeypatch, transport):
    """On the unix socket, and on loopback TCP with the endpoint file's token (forced here as
    systems without unix sockets choose it: the editors and the daemon they start inherit it)."""
    monkeypatch.setenv(TRANSPORT_ENV, transport)
    socket_path = tmp_path / "engine.sock"  # a daemon of this test's own, auto-started by the first editor
    first = await start_editor("first editor", socket_path)
    second = None
    try:
        uri = (tmp_path / "shared.py").as_uri()
        open_doc(first, uri)
        first_answer = await complete(first, uri)
        assert first_answer.strip()
        assert socket_path.is_socket() == (transport == "unix") and socket_path.is_file() == (transport == "tcp")
        engine = DaemonClient(socket_path, client_name="test observer")
        hits = engine.stats()["prefix_hits"]

        second = await start_editor("second editor", socket_path)
        open_doc(second, uri)
        assert await complete(second, uri) == first_answer  # same model, same text, same greedy answer
        stats = engine.stats()
        assert sum(c.startswith("loopcoder lsp") for c in stats["clients"]) == 2
        # The second editor's prompt found the first one's blocks: the file is stored once.
        assert stats["prefix_hits"] - hits >= len(TEXT) // 4 // 16 // 2

        second._server.send_signal(signal.SIGKILL)  # an editor crashes mid-session
        await second._server.wait()
        assert await complete(first, uri) == first_answer  # the other editor carries on
        assert engine.stats()["pid"] == stats["pid"]
    finally:
        await stop(first)
        if second is not None:
            await stop(second)
        try:
            DaemonClient(socket_path, client_name="test teardown").shutdown()
        except Exception:
            pass
