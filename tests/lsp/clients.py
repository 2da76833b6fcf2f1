"""What the end-to-end LSP tests share: opening a document as an editor does."""

from lsprotocol import types
from pytest_lsp import LanguageClient


def open_document(client: LanguageClient, name: str, text: str) -> str:
    """didOpen a Python file under file:///work/; returns its URI."""
    uri = f"file:///work/{name}"
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        text_document=types.TextDocumentItem(uri=uri, language_id="python", version=1, text=text)))
    return uri
