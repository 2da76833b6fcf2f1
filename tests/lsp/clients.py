"""What the end-to-end LSP tests share: `loopcoder lsp` started as a pytest-lsp fixture, and
opening a document as an editor does."""

import sys
from typing import Any, Callable

import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

SERVER = ClientServerConfig(server_command=[sys.executable, "-m", "loopcoder.lsp.cli", "lsp"])
EDITORS = ("neovim", "visual-studio-code")  # pytest-lsp's client profiles


def language_server(options: dict[str, Any], *, editors: tuple[str, ...] = EDITORS,
                    prepare: Callable[[LanguageClient], None] | None = None, **initialize: Any):
    """A module-scoped fixture: one `loopcoder lsp` process per editor profile, initialized with
    `options` (initializationOptions) and any other InitializeParams fields in `initialize`.
    `prepare(client)` registers what the client answers (workspace/applyEdit...) before that.
    The client keeps its profile (`client.profile`) and InitializeResult (`client.init_result`)."""

    @pytest_lsp.fixture(scope="module", params=list(editors), config=SERVER)
    async def client(request, lsp_client: LanguageClient):
        lsp_client.profile = request.param
        if prepare is not None:
            prepare(lsp_client)
        lsp_client.init_result = await lsp_client.initialize_session(types.InitializeParams(
            capabilities=client_capabilities(request.param), initialization_options=options, **initialize))
        yield
        await lsp_client.shutdown_session()

    return client


def open_document(client: LanguageClient, name: str, text: str) -> str:
    """didOpen a Python file under file:///work/; returns its URI."""
    uri = f"file:///work/{name}"
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        text_document=types.TextDocumentItem(uri=uri, language_id="python", version=1, text=text)))
    return uri
