"""Open documents: text sync and position conversion (textDocument/didOpen, didChange, didClose).

Editor-neutral (no pygls). LSP positions are (line, character) where `character`
counts code units of the negotiated `positionEncoding`: UTF-16 by default, UTF-8 or
UTF-32 when both sides agree. Python strings index code points (= UTF-32 units), so
every position is converted to a string offset before the text is touched.

Lines end at "\\n", "\\r\\n" or "\\r", as the LSP specification says; a line's
characters exclude its line ending. A position past the end of its line or past the
last line is an `InvalidRequestError`, never silently clamped: a client that sends one
has lost track of the document, and a clamped edit would corrupt it further.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from typing import Iterable, NamedTuple

from loopcoder.engine.errors import InvalidRequestError

ENCODINGS = ("utf-8", "utf-16", "utf-32")
DEFAULT_ENCODING = "utf-16"  # what LSP mandates when nothing else is negotiated

_LINE_END = re.compile(r"\r\n|\r|\n")


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
    """String offset of an LSP position; raises InvalidRequestError when it is not in `text`."""
    line, character = position
    starts = line_starts(text) if starts is None else starts
    if not 0 <= line < len(starts):
        raise InvalidRequestError(f"position {line}:{character} is past the end of the document ({len(starts)} lines)")
    begin, end = starts[line], _line_content_end(text, starts, line)
    if character < 0:
        raise InvalidRequestError(f"position {line}:{character} has a negative character")
    if encoding == "utf-32" or text[begin:end].isascii():
        if character > end - begin:
            raise _past_line_end(line, character, end - begin, encoding)
        return begin + character
    counted = 0
    for offset in range(begin, end):
        if counted == character:
            return offset
        counted += _units(text[offset], encoding)
        if counted > character:
            raise InvalidRequestError(f"position {line}:{character} falls inside a character ({encoding} code units)")
    if counted == character:
        return end
    raise _past_line_end(line, character, counted, encoding)


def _past_line_end(line: int, character: int, length: int, encoding: str) -> InvalidRequestError:
    return InvalidRequestError(
        f"position {line}:{character} is past the end of line {line} ({length} {encoding} code units)"
    )


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
            start = self.offset_at(change.range.start, encoding)
            end = self.offset_at(change.range.end, encoding)
            if end < start:
                raise InvalidRequestError(f"range {change.range} ends before it starts")
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
        document = self._documents.get(uri)
        if document is None:
            raise InvalidRequestError(f"document {uri} is not open: the client must send textDocument/didOpen first")
        return document

    def change(self, uri: str, version: int | None, changes: Iterable[Change]) -> Document:
        """textDocument/didChange: apply `changes` in order, each to the previous one's result.

        The batch is atomic: when one change is invalid, the document keeps its old text
        and version, and the error says which change failed.
        """
        document = self.get(uri)
        if version is not None and document.version is not None and version <= document.version:
            raise InvalidRequestError(f"version {version} of {uri} is not newer than version {document.version}")
        draft = Document(uri, document.text, document.version, document.language_id)
        for i, change in enumerate(changes):
            try:
                draft.apply(change, self.encoding)
            except InvalidRequestError as e:
                raise InvalidRequestError(f"change {i} of {uri} (version {version}): {e}") from None
        document.text, document.version, document._starts = draft.text, version, draft._starts
        return document

    def close(self, uri: str) -> None:
        """textDocument/didClose; closing a document that is not open is an error."""
        if self._documents.pop(uri, None) is None:
            raise InvalidRequestError(f"document {uri} is not open, so it cannot be closed")
