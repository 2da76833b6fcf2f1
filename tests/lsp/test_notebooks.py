"""Notebook cells: their order, their kinds, and the text a completion in one of them sees."""

import pytest

from loopcoder.engine.errors import InvalidRequestError
from loopcoder.lsp.features.documents import DocumentStore
from loopcoder.lsp.features.notebooks import CELL_SEPARATOR, Cell, Notebooks

NB = "file:///nb.ipynb"


def _setup(*cells: tuple[str, str, bool]):
    docs, books = DocumentStore(), Notebooks()
    for uri, text, _ in cells:
        docs.open(uri, text, 1, "python")
    books.open(NB, [Cell(uri, code) for uri, _, code in cells])
    return docs, books


def test_a_cell_sees_the_code_cells_in_order():
    docs, books = _setup(("c1", "import numpy as np", True), ("m1", "# Title", False), ("c2", "x = np.", True))
    ctx = books.context("c2", docs)
    assert ctx.key == NB
    assert ctx.text == "import numpy as np" + CELL_SEPARATOR + "x = np."
    assert ctx.text[ctx.offset:] == "x = np."
    assert books.context("m1", docs) is None  # markdown cells complete on their own
    assert books.context("elsewhere.py", docs) is None
    assert books.joined(NB, docs) == ctx.text


def test_splice_moves_cells_and_rejects_what_does_not_fit():
    docs, books = _setup(("c1", "a = 1", True), ("c2", "b = a", True))
    docs.open("c0", "import os", 1, "python")
    books.splice(NB, 0, 0, [Cell("c0", True)])
    assert [c.uri for c in books.cells(NB)] == ["c0", "c1", "c2"]
    books.splice(NB, 1, 1, [])
    assert [c.uri for c in books.cells(NB)] == ["c0", "c2"] and books.notebook_of("c1") is None
    with pytest.raises(InvalidRequestError, match="does not fit notebook"):
        books.splice(NB, 1, 5, [])
    assert [c.uri for c in books.cells(NB)] == ["c0", "c2"]  # nothing changed


def test_kind_changes_and_close():
    docs, books = _setup(("c1", "a = 1", True), ("c2", "b = a", True))
    books.set_kind("c1", False)
    assert books.context("c2", docs).text == "b = a"
    assert [c.uri for c in books.close(NB)] == ["c1", "c2"]
    assert books.notebook_of("c2") is None
    with pytest.raises(InvalidRequestError, match="is not open"):
        books.cells(NB)
