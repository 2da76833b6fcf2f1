"""Text document sync: textDocument/didOpen, didChange (incremental), didSave and didClose. The
documents live in `lsp/features/documents.py`; review findings follow the lines they are on."""

from __future__ import annotations

from lsprotocol import types

from loopcoder.lsp.features import review
from loopcoder.lsp.features.documents import DocumentOutOfSyncError
from loopcoder.lsp.server.protocol import RejectedMessage
from loopcoder.lsp.server.code_actions import clear_findings, publish_findings
from loopcoder.lsp.server.commands import ACTIONS
from loopcoder.lsp.server.common import file_path, notification, to_change
from loopcoder.lsp.server.state import LoopcoderServer


@notification
def did_open(ls: LoopcoderServer, params: types.DidOpenTextDocumentParams) -> None:
    """textDocument/didOpen: store the text and pre-warm its K/V."""
    doc = params.text_document
    ls.documents.open(doc.uri, doc.text, doc.version, doc.language_id)
    ls.start_prewarm(doc.uri)


@notification
def change_rejected(ls: LoopcoderServer, rejected: RejectedMessage) -> None:
    """A textDocument/didChange whose params could not be read: the editor's text moved on and ours
    did not, so the document goes out of sync as for a change that cannot be applied."""
    params = rejected.params if isinstance(rejected.params, dict) else {}
    document = params.get("textDocument")
    uri = document.get("uri") if isinstance(document, dict) else None
    if not isinstance(uri, str):
        return
    try:
        ls.documents.lose_sync(uri, f"a change could not be read ({rejected.reason})")
    except DocumentOutOfSyncError:
        clear_findings(ls, uri)
        raise


@notification
def did_change(ls: LoopcoderServer, params: types.DidChangeTextDocumentParams) -> None:
    """textDocument/didChange (incremental sync). A change that cannot be applied puts the document out of
    sync: the user is told once (window/showMessage), its diagnostics go, and its requests fail until the
    editor sends its whole text again."""
    doc = params.text_document
    try:
        document = ls.documents.change(doc.uri, doc.version, [to_change(c) for c in params.content_changes])
    except DocumentOutOfSyncError:
        clear_findings(ls, doc.uri)  # their lines can no longer be followed
        raise
    if not ls.documents.in_sync(doc.uri):
        return
    path = file_path(doc.uri)
    if ls.repo_context is not None and path is not None and params.content_changes:
        first = params.content_changes[0]
        line = first.range.start.line if isinstance(first, types.TextDocumentContentChangePartial) else 0
        ls.repo_context.document_edited(path, document.text, line)  # a recent chunk; its definitions seen elsewhere
    found = ls.findings.get(doc.uri)
    if found:  # diagnostics follow their lines; a finding whose line was edited goes away
        moved = review.relocate(found, document.text)
        if moved != found:
            ls.findings[doc.uri] = moved
            publish_findings(ls, doc.uri)


@notification
def did_save(ls: LoopcoderServer, params: types.DidSaveTextDocumentParams) -> None:
    """textDocument/didSave: pre-warm again, the user is about to go on editing (not a document out of sync:
    its text is not the editor's, and the user has been told)."""
    if ls.documents.in_sync(params.text_document.uri):
        ls.start_prewarm(params.text_document.uri)
    path = file_path(params.text_document.uri)
    if ls.repo_context is not None and path is not None:
        ls.repo_context.file_changed(path)  # the index reads the saved file again


@notification
def did_close(ls: LoopcoderServer, params: types.DidCloseTextDocumentParams) -> None:
    """textDocument/didClose: forget the text, stop its requests, unpin its K/V."""
    uri = params.text_document.uri
    ls.documents.close(uri)
    for key in ls.requests.keys():
        if key == uri or key.startswith(f"{uri}#"):
            ls.requests.forget(key)
    ls.typed_through.forget(uri)
    clear_findings(ls, uri)
    path = file_path(uri)
    if ls.repo_context is not None and path is not None:
        ls.repo_context.document_closed(path)
    engine = ls.engine.loaded
    if engine is not None:  # the engine lock may be busy: never block the event loop on it
        for key in [uri, *(f"{uri}#{action}" for action in ACTIONS)]:
            ls.workers.submit(engine.close, key)
