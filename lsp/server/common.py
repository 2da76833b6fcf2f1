"""What every handler module shares: `LoopcoderError` to JSON-RPC error or message (the `request` and
`notification` decorators), and conversions between lsprotocol's positions, ranges and edits and
`lsp/features/documents.py`'s."""

from __future__ import annotations

import functools

from lsprotocol import types
from pygls.uris import to_fs_path
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams

from loopcoder.engine.errors import InvalidRequestError, LoopcoderError
from loopcoder.lsp.features.prompts import Span
from loopcoder.lsp.features.documents import Change, Document, Position, Range, units_of
from loopcoder.lsp.server.state import LoopcoderServer


def rpc_error(ls: LoopcoderServer, error: LoopcoderError) -> JsonRpcException:
    """The JSON-RPC error a request answers with; logged to the client too."""
    ls.log_error(error)
    code = JsonRpcInvalidParams.CODE if isinstance(error, InvalidRequestError) else int(types.LSPErrorCodes.RequestFailed)
    return JsonRpcException(message=str(error), code=code)


def request(handler):
    """Map LoopcoderError to a JSON-RPC error for an async request handler."""

    @functools.wraps(handler)
    async def wrapped(ls: LoopcoderServer, *params):
        try:
            return await handler(ls, *params)
        except LoopcoderError as e:
            raise rpc_error(ls, e) from None

    return wrapped


def notification(handler):
    """Report a LoopcoderError of a notification handler: there is no response to carry it."""

    @functools.wraps(handler)
    def wrapped(ls: LoopcoderServer, params) -> None:
        try:
            handler(ls, params)
        except LoopcoderError as e:
            ls.log_error(e)
            ls.window_show_message(types.ShowMessageParams(type=types.MessageType.Error, message=f"loopcoder: {e}"))

    return wrapped


def to_range(r: types.Range) -> Range:
    return Range(Position(r.start.line, r.start.character), Position(r.end.line, r.end.character))


def to_change(change: types.TextDocumentContentChangeEvent) -> Change:
    if isinstance(change, types.TextDocumentContentChangePartial):
        return Change(change.text, to_range(change.range))
    return Change(change.text)


def lsp_position(document: Document, line: int, character: int, encoding: str) -> types.Position:
    """Character `character` (a code point index) of `line` as an LSP position in `encoding`'s units."""
    text = document.text
    start = document.starts[line]
    return types.Position(line=line, character=units_of(text[start : start + character], encoding))


def span_of(ls: LoopcoderServer, document: Document, rng: Range | None) -> Span | None:
    """The whole lines a range covers; None (the whole document) for no range or an empty one."""
    if rng is None:
        return None
    start = document.offset_at(rng.start, ls.documents.encoding)
    end = document.offset_at(rng.end, ls.documents.encoding)
    if end < start:
        raise InvalidRequestError(f"range {rng.start.line}:{rng.start.character}-{rng.end.line}:{rng.end.character} ends before it starts")
    if end == start:
        return None
    last = rng.end.line - 1 if rng.end.character == 0 and rng.end.line > rng.start.line else rng.end.line
    return Span(rng.start.line, last)


def workspace_edit(ls: LoopcoderServer, document: Document, edits: list[types.TextEdit]) -> types.WorkspaceEdit:
    """Versioned documentChanges where the client takes them (it refuses a stale edit), else plain changes."""
    caps = ls.client_capabilities.workspace
    versioned = caps is not None and caps.workspace_edit is not None and caps.workspace_edit.document_changes
    if versioned and document.version is not None:
        ident = types.OptionalVersionedTextDocumentIdentifier(uri=document.uri, version=document.version)
        return types.WorkspaceEdit(document_changes=[types.TextDocumentEdit(text_document=ident, edits=edits)])
    return types.WorkspaceEdit(changes={document.uri: edits})


def file_path(uri: str) -> str | None:
    """The local path of a file:// URI, None for any other scheme (untitled:, a notebook cell)."""
    if not uri.startswith("file://"):
        return None
    return to_fs_path(uri) or None
