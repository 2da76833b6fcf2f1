"""Notebook document sync (notebookDocument/didOpen, didChange, didSave, didClose): each cell is a
text document, and `lsp/features/notebooks.py` keeps their order and kinds so a cell is completed
in its notebook's code."""

from __future__ import annotations

from typing import Iterable, Sequence

from lsprotocol import types

from loopcoder.lsp.features.documents import DocumentOutOfSyncError
from loopcoder.lsp.features.notebooks import Cell
from loopcoder.lsp.server.common import notification, to_change
from loopcoder.lsp.server.state import LoopcoderServer


def _cell(cell: types.NotebookCell) -> Cell:
    return Cell(cell.document, cell.kind == types.NotebookCellKind.Code)


def _open_cells(ls: LoopcoderServer, items: Sequence[types.TextDocumentItem]) -> None:
    for item in items:
        ls.documents.open(item.uri, item.text, item.version, item.language_id)


def _close_cells(ls: LoopcoderServer, uris: Iterable[str]) -> None:
    for uri in uris:
        if uri in ls.documents:
            ls.documents.close(uri)


@notification
def did_open_notebook(ls: LoopcoderServer, params: types.DidOpenNotebookDocumentParams) -> None:
    """notebookDocument/didOpen: its cells become documents; pre-warm the notebook's code."""
    notebook = params.notebook_document
    _open_cells(ls, params.cell_text_documents)
    ls.notebooks.open(notebook.uri, [_cell(c) for c in notebook.cells])
    ls.start_prewarm(notebook.uri, ls.notebooks.joined(notebook.uri, ls.documents))


@notification
def did_change_notebook(ls: LoopcoderServer, params: types.DidChangeNotebookDocumentParams) -> None:
    """notebookDocument/didChange: cells added, removed, re-kinded or edited."""
    uri, cells = params.notebook_document.uri, params.change.cells
    ls.notebooks.cells(uri)  # an unknown notebook is an error before anything changes
    if cells is None:
        return
    if cells.structure is not None:
        change = cells.structure.array
        ls.notebooks.splice(uri, change.start, change.delete_count, [_cell(c) for c in change.cells or ()])
        _open_cells(ls, cells.structure.did_open or ())
        _close_cells(ls, (d.uri for d in cells.structure.did_close or ()))
    for cell in cells.data or ():
        ls.notebooks.set_kind(cell.document, cell.kind == types.NotebookCellKind.Code)
    lost = []  # every cell's changes are applied, or refused, before any is reported
    for content in cells.text_content or ():
        doc = content.document
        try:
            ls.documents.change(doc.uri, doc.version, [to_change(c) for c in content.changes])
        except DocumentOutOfSyncError as e:
            lost.append(str(e))
    if lost:
        raise DocumentOutOfSyncError("; ".join(lost))


@notification
def did_save_notebook(ls: LoopcoderServer, params: types.DidSaveNotebookDocumentParams) -> None:
    """notebookDocument/didSave: pre-warm again, unless a cell is out of sync (as didSave)."""
    uri = params.notebook_document.uri
    if all(ls.documents.in_sync(c.uri) for c in ls.notebooks.cells(uri) if c.uri in ls.documents):
        ls.start_prewarm(uri, ls.notebooks.joined(uri, ls.documents))


@notification
def did_close_notebook(ls: LoopcoderServer, params: types.DidCloseNotebookDocumentParams) -> None:
    """notebookDocument/didClose: forget its cells and unpin its K/V."""
    uri = params.notebook_document.uri
    cells = ls.notebooks.close(uri)
    _close_cells(ls, [c.uri for c in cells] + [d.uri for d in params.cell_text_documents])
    ls.requests.forget(uri)
    ls.typed_through.forget(uri)
    engine = ls.engine.loaded
    if engine is not None:
        ls.workers.submit(engine.close, uri)
