"""Open documents: text sync and position conversion (textDocument/didOpen, didChange, didClose).

Editor-neutral (no pygls). LSP positions are (line, character) where `character`
counts code units of the negotiated `positionEncoding`: UTF-16 by default, UTF-8 or
UTF-32 when both sides agree. Python strings index code points (= UTF-32 units), so
every position is converted to a string offset before the text is touched.

Lines end at "\\n", "\\r\\n" or "\\r", as the LSP specification says; a line's
characters exclude its line ending. Positions past the end are clamped as far as the
specification and real clients go, and no further:

- a character past the end of its line is the line's end: "If the character value is
  greater than the line length it defaults back to the line length" (LSP, Position);
- the line after the last line, at any character, is the end of the document, as in
  VS Code's own documents and mainstream servers. Neovim sends a file without a final
  newline as it is ('eol' off) but computes its incremental changes as if every line
  ended with one, so its edits below the last line reach the line after it;
- a line further than that is an `InvalidRequestError`: no client sends one unless
  its text differs from ours by more than a final newline, and clamping such an edit
  would corrupt the document silently.

A negative position, a position inside a character (between the two UTF-16 units of an
emoji) and a range that ends before it starts are errors too. A didChange batch that
cannot be applied puts its document out of sync (`DocumentStore.change`): the server
says so once, and answers the document's requests with `DocumentOutOfSyncError` until
the editor sends its whole text again.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from typing import Iterable, NamedTuple

from loopcoder.engine.errors import InvalidRequestError, LoopcoderError

ENCODINGS = ("utf-8", "utf-16", "utf-32")
DEFAULT_ENCODING = "utf-16"  # what LSP mandates when nothing else is negotiated

_LINE_END = re.compile(r"\r\n|\r|\n")


class DocumentOutOfSyncError(LoopcoderError):
    """The server's text of a document no longer follows the editor's: a change could not be applied."""


class Position(NamedTuple):
    line: int  # 0-based
    character: int  # 0-based, in code units of the encoding


class Range(NamedTuple):
    start: Position
    end: Position


class Change(NamedTuple):
    """One entry of didChange's contentChanges: `range=None` replaces the whole text."""

    text: str
    range: Range | None = None


def _units(ch: str, encoding: str) -> int:
    """Code units of one code point."""
    if encoding == "utf-16":
        return 2 if ord(ch) > 0xFFFF else 1
    if encoding == "utf-8":
        return len(ch.encode("utf-8", "surrogatepass"))
    return 1


def units_of(text: str, encoding: str) -> int:
    """Length of `text` in code units of `encoding`."""
    if encoding == "utf-32" or text.isascii():
        return len(text)
    return sum(_units(ch, encoding) for ch in text)


def line_starts(text: str) -> list[int]:
    """Offsets where each line begins; a text of n line endings has n + 1 lines."""
    return [0] + [m.end() for m in _LINE_END.finditer(text)]


def _line_content_end(text: str, starts: list[int], line: int) -> int:
    """Offset just past line `line`'s last character, before its line ending."""
    if line + 1 == len(starts):
        return len(text)
    end = starts[line + 1] - 1
    if text[end] == "\n" and end > starts[line] and text[end - 1] == "\r":
        end -= 1
    return end


def offset_at(text: str, position: Position, encoding: str = DEFAULT_ENCODING, starts: list[int] | None = None) -> int:
    """String offset of an LSP position, clamped as the module docstring says; InvalidRequestError past that."""
    line, character = position
    if line < 0 or character < 0:
        raise InvalidRequestError(f"position {line}:{character} has a negative line or character")
    starts = line_starts(text) if starts is None else starts
    if line == len(starts):
        return len(text)
    if line > len(starts):
        raise InvalidRequestError(f"position {line}:{character} is past the end of the document ({len(starts)} lines)")
    begin, end = starts[line], _line_content_end(text, starts, line)
    if encoding == "utf-32" or text[begin:end].isascii():
        return begin + min(character, end - begin)
    counted = 0
    for offset in range(begin, end):
        if counted == character:
            return offset
        counted += _units(text[offset], encoding)
        if counted > character:
            raise InvalidRequestError(f"position {line}:{character} falls inside a character ({encoding} code units)")
    return end


def position_at(text: str, offset: int, encoding: str = DEFAULT_ENCODING, starts: list[int] | None = None) -> Position:
    """LSP position of a string offset (the inverse of `offset_at`)."""
    if not 0 <= offset <= len(text):
        raise InvalidRequestError(f"offset {offset} is outside the document (0..{len(text)})")
    starts = line_starts(text) if starts is None else starts
    line = bisect.bisect_right(starts, offset) - 1
    return Position(line, units_of(text[starts[line] : offset], encoding))


@dataclass
class Document:
    uri: str
    text: str
    version: int | None = None
    language_id: str = ""
    out_of_sync: str | None = None  # why the text stopped following the editor's; None while it follows
    _starts: list[int] | None = field(default=None, repr=False)

    @property
    def starts(self) -> list[int]:
        # Cached per text: a completion converts one position, an edit batch several.
        if self._starts is None:
            self._starts = line_starts(self.text)
        return self._starts

    def offset_at(self, position: Position, encoding: str = DEFAULT_ENCODING) -> int:
        return offset_at(self.text, position, encoding, self.starts)

    def position_at(self, offset: int, encoding: str = DEFAULT_ENCODING) -> Position:
        return position_at(self.text, offset, encoding, self.starts)

    def apply(self, change: Change, encoding: str = DEFAULT_ENCODING) -> None:
        """Apply one content change (full when `change.range` is None)."""
        if change.range is None:
            self.text = change.text
        else:
            first, last = change.range
            if last < first:  # by line, then character; as sent, before either is clamped
                raise InvalidRequestError(f"range {first.line}:{first.character}-{last.line}:{last.character} "
                                          "ends before it starts")
            start, end = self.offset_at(first, encoding), self.offset_at(last, encoding)
            self.text = self.text[:start] + change.text + self.text[end:]
        self._starts = None


class DocumentStore:
    """The documents an editor has open, keyed by URI, in one position encoding."""

    def __init__(self, encoding: str = DEFAULT_ENCODING):
        self.encoding = encoding
        self._documents: dict[str, Document] = {}

    @property
    def encoding(self) -> str:
        return self._encoding

    @encoding.setter
    def encoding(self, value: str) -> None:
        if value not in ENCODINGS:
            raise InvalidRequestError(f"unknown position encoding {value!r} (expected one of {', '.join(ENCODINGS)})")
        self._encoding = value

    def __contains__(self, uri: str) -> bool:
        return uri in self._documents

    def __len__(self) -> int:
        return len(self._documents)

    def open(self, uri: str, text: str, version: int | None = None, language_id: str = "") -> Document:
        """textDocument/didOpen: (re)open a document; a second open replaces the first."""
        document = self._documents[uri] = Document(uri, text, version, language_id)
        return document

    def get(self, uri: str) -> Document:
        """The document, to answer a request about it: an error when it is not open or out of sync."""
        document = self._open_document(uri)
        if document.out_of_sync is not None:
            raise DocumentOutOfSyncError(document.out_of_sync)
        return document

    def in_sync(self, uri: str) -> bool:
        """Whether `uri` is open and its text follows the editor's."""
        document = self._documents.get(uri)
        return document is not None and document.out_of_sync is None

    def _open_document(self, uri: str) -> Document:
        document = self._documents.get(uri)
        if document is None:
            raise InvalidRequestError(f"document {uri} is not open: the client must send textDocument/didOpen first")
        return document

    def change(self, uri: str, version: int | None, changes: Iterable[Change]) -> Document:
        """textDocument/didChange: apply `changes` in order, each to the previous one's result.

        A batch that cannot be applied (a version not newer than the last, a range that
        ends before it starts, a position far past the end) leaves our text behind the
        editor's. The document then keeps its old text, goes out of sync and
        DocumentOutOfSyncError is raised, once: later incremental changes are ignored,
        and `get` raises the same error, until the editor sends its whole text again
        with didOpen or a change without a range (the changes before that one no
        longer matter, a bad one included).
        """
        document = self._open_document(uri)
        changes = list(changes)
        whole = max((i for i, change in enumerate(changes) if change.range is None), default=None)
        if whole is None and document.out_of_sync is not None:
            return document  # the user has been told, and nothing incremental brings the text back
        try:
            text = self._changed_text(document, version, changes, whole or 0)
        except InvalidRequestError as e:
            return self._lose_sync(document, str(e))
        document.text, document.version, document.out_of_sync, document._starts = text, version, None, None
        return document

    def _changed_text(self, document: Document, version: int | None, changes: list[Change], first: int) -> str:
        """The text after `changes[first:]`; InvalidRequestError says which change could not be applied."""
        if version is not None and document.version is not None and version <= document.version:
            raise InvalidRequestError(f"version {version} of {document.uri} is not newer than version {document.version}")
        draft = Document(document.uri, document.text, document.version, document.language_id)
        for i in range(first, len(changes)):
            try:
                draft.apply(changes[i], self.encoding)
            except InvalidRequestError as e:
                raise InvalidRequestError(f"change {i} (version {version}) could not be applied: {e}") from None
        return draft.text

    def lose_sync(self, uri: str, reason: str) -> None:
        """Mark an open document out of sync (an edit of it could not be read): DocumentOutOfSyncError
        as for a change that could not be applied; nothing for a document that is not open."""
        document = self._documents.get(uri)
        if document is not None:
            self._lose_sync(document, reason)

    def _lose_sync(self, document: Document, reason: str) -> Document:
        """Mark `document` out of sync; raise DocumentOutOfSyncError unless it already was (the user knows)."""
        already = document.out_of_sync is not None
        document.out_of_sync = (f"{document.uri} is out of sync with the editor: {reason}. Completions and actions "
                                "for it stop until you reopen the file, so that the editor sends its whole text "
                                "again: close and open it (in Neovim, :w then :e, or :e! to drop unsaved changes)")
        if already:
            return document
        raise DocumentOutOfSyncError(document.out_of_sync)

    def close(self, uri: str) -> None:
        """textDocument/didClose; closing a document that is not open is an error."""
        if self._documents.pop(uri, None) is None:
            raise InvalidRequestError(f"document {uri} is not open, so it cannot be closed")
