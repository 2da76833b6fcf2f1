"""Notebooks (LSP notebookDocument/*, and the JupyterLab extension): which cells make up each notebook, and the
text a cell's completion sees.

Editor-neutral (no pygls). Over LSP each cell is also an ordinary text document in the
`DocumentStore`; this module keeps the cells' order and kinds. The JupyterLab extension
sends the whole notebook with each request instead: `notebook_context` renders it. A completion in a code
cell sees the notebook's code cells joined in order, so the model knows the imports and
definitions of the cells above; the engine session is keyed by the notebook, so the
cells above stay warm while the user types in a cell below.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from loopcoder.engine.errors import InvalidRequestError

from .documents import DocumentStore

CELL_SEPARATOR = "\n\n"


@dataclass
class Cell:
    uri: str
    code: bool  # False for markdown (markup) cells


@dataclass(frozen=True)
class CellContext:
    key: str  # the engine session and request key: the notebook's URI
    text: str  # the code cells, joined
    offset: int  # where the cell starts in `text`


class Notebooks:
    def __init__(self) -> None:
        self._cells: dict[str, list[Cell]] = {}
        self._owner: dict[str, str] = {}  # cell URI -> notebook URI

    def __contains__(self, uri: str) -> bool:
        return uri in self._cells

    def open(self, uri: str, cells: Iterable[Cell]) -> None:
        if uri in self._cells:
            self.close(uri)
        self._cells[uri] = list(cells)
        for cell in self._cells[uri]:
            self._owner[cell.uri] = uri

    def cells(self, uri: str) -> list[Cell]:
        cells = self._cells.get(uri)
        if cells is None:
            raise InvalidRequestError(f"notebook {uri} is not open: the client must send notebookDocument/didOpen first")
        return cells

    def splice(self, uri: str, start: int, delete_count: int, new: Iterable[Cell]) -> None:
        """notebookDocument/didChange's cell array change: delete `delete_count` cells at `start`, insert `new`."""
        cells = self.cells(uri)
        if not (0 <= start <= len(cells) and 0 <= delete_count <= len(cells) - start):
            raise InvalidRequestError(
                f"cell change at {start} deleting {delete_count} does not fit notebook {uri} of {len(cells)} cells")
        for cell in cells[start : start + delete_count]:
            self._owner.pop(cell.uri, None)
        new = list(new)
        cells[start : start + delete_count] = new
        for cell in new:
            self._owner[cell.uri] = uri

    def set_kind(self, cell_uri: str, code: bool) -> None:
        for cell in self.cells(self._owner.get(cell_uri, "")):
            if cell.uri == cell_uri:
                cell.code = code

    def close(self, uri: str) -> list[Cell]:
        cells = self._cells.pop(uri, [])
        for cell in cells:
            self._owner.pop(cell.uri, None)
        return cells

    def notebook_of(self, cell_uri: str) -> str | None:
        return self._owner.get(cell_uri)

    def context(self, cell_uri: str, documents: DocumentStore) -> CellContext | None:
        """The text a completion in `cell_uri` sees; None for a document that is no code cell of a notebook."""
        uri = self._owner.get(cell_uri)
        if uri is None:
            return None
        cells = self.cells(uri)
        if not any(c.uri == cell_uri and c.code for c in cells):
            return None
        parts, offset, position = [], 0, 0
        for cell in cells:
            if not cell.code or cell.uri not in documents:
                continue
            if cell.uri == cell_uri:
                offset = position
            text = documents.get(cell.uri).text
            parts.append(text)
            position += len(text) + len(CELL_SEPARATOR)
        return CellContext(uri, CELL_SEPARATOR.join(parts), offset)

    def joined(self, uri: str, documents: DocumentStore) -> str:
        """All code cells of notebook `uri`, joined: what pre-warming prefills."""
        return CELL_SEPARATOR.join(documents.get(c.uri).text for c in self.cells(uri) if c.code and c.uri in documents)


# -- a whole notebook sent with the request (the JupyterLab extension) ---------------------

OUTPUT_PREFIX = "# Out: "


@dataclass(frozen=True)
class CellText:
    kind: str  # "code", "markdown" or "raw"
    source: str
    outputs: tuple[str, ...] = ()  # the text of its outputs (stdout, results), in order


def notebook_context(key: str, cells: list[CellText], index: int, include_outputs: bool = True,
                     max_output_chars: int = 400) -> CellContext:
    """The text a completion in code cell `index` sees: the cells above in order (code as is, markdown as
    comments, short text outputs as `# Out:` comments when `include_outputs`), then the cell itself.

    Cells below are left out: the suffix is the rest of the cell, which keeps it short. The
    text up to the cell depends only on the cells above, so while the user types in a cell
    the prompt's start stays put and the session `key` (the notebook) stays warm.
    """
    if not 0 <= index < len(cells):
        raise InvalidRequestError(f"cell index {index} is outside the notebook (0..{len(cells) - 1})")
    if cells[index].kind != "code":
        raise InvalidRequestError(f"cell {index} is a {cells[index].kind} cell: completion works in code cells")
    parts = [rendered for cell in cells[:index] if (rendered := _render(cell, include_outputs, max_output_chars))]
    head = "".join(part + CELL_SEPARATOR for part in parts)
    return CellContext(key, head + cells[index].source, len(head))


def _render(cell: CellText, include_outputs: bool, max_output_chars: int) -> str:
    if cell.kind == "markdown":
        return _commented(cell.source.strip(), "# ")
    if cell.kind != "code":
        return ""  # raw cells are not code the kernel ran
    text = cell.source.rstrip()
    if include_outputs:
        outputs = [_short(o.strip(), max_output_chars) for o in cell.outputs if o.strip()]
        shown = "\n".join(_commented(o, OUTPUT_PREFIX) for o in outputs if o)
        text = f"{text}\n{shown}" if shown and text else text or shown
    return text


def _short(output: str, max_chars: int) -> str:
    """An output of at most `max_chars` characters, cut at a line end; "" when even its first line is too long."""
    if len(output) <= max_chars:
        return output
    cut = output[:max_chars].rsplit("\n", 1)[0]
    return f"{cut}\n..." if "\n" in output[:max_chars] else ""


def _commented(text: str, prefix: str) -> str:
    return "\n".join((prefix + line).rstrip() for line in text.split("\n")) if text else ""
