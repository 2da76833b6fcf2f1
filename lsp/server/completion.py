"""textDocument/inlineCompletion (ghost text) and textDocument/completion (the same suggestion as one
item): the suggestion comes from `lsp/features/inline_completion.py`, in a worker."""

from __future__ import annotations

from lsprotocol import types

from loopcoder.lsp.features.documents import Position
from loopcoder.lsp.features.inline_completion import suggest
from loopcoder.lsp.server.common import file_path, request
from loopcoder.lsp.server.state import LoopcoderServer


async def _suggestion(ls: LoopcoderServer, uri: str, position: types.Position, multiline: bool) -> str | None:
    document = ls.documents.get(uri)
    offset = document.offset_at(Position(position.line, position.character), ls.documents.encoding)
    # A snapshot: didChange may replace the document's text while the engine works.
    text, settings = document.text, ls.settings
    cell = ls.notebooks.context(uri, ls.documents)
    if cell is not None:  # a notebook cell: complete in the notebook's code, warm in the notebook's session
        uri, text, offset = cell.key, cell.text, cell.offset + offset
    ticket = ls.requests.begin(uri)  # also stops older work for this document
    rest = ls.typed_through.rest(uri, text, offset, multiline) if settings.cache else None
    if rest is not None:
        return rest

    path = file_path(uri) if cell is None else None  # notebook cells: no repository context yet
    provider = ls.repo_context

    def work() -> str | None:
        engine = ls.engine.get(settings)
        context = None
        if provider is not None and path is not None and engine.tokenizer is not None:
            context = provider.context_ids(engine.tokenizer, path, text, offset)
        return suggest(engine, uri, text, offset, settings, multiline=multiline, cancelled=ticket.cancelled,
                       context=context)

    suggestion = await ls.in_worker(ticket, work)
    if not ticket.cancelled():
        ls.typed_through.remember(uri, text, offset, suggestion, multiline)
    return suggestion


@request
async def inline_completion(ls: LoopcoderServer, params: types.InlineCompletionParams) -> types.InlineCompletionList | None:
    """textDocument/inlineCompletion (LSP 3.18): ghost text at the cursor."""
    multiline = params.context.trigger_kind == types.InlineCompletionTriggerKind.Invoked
    text = await _suggestion(ls, params.text_document.uri, params.position, multiline)
    if text is None:
        return None
    here = types.Range(start=params.position, end=params.position)
    return types.InlineCompletionList(items=[types.InlineCompletionItem(insert_text=text, range=here)])


@request
async def completion(ls: LoopcoderServer, params: types.CompletionParams) -> types.CompletionList | None:
    """textDocument/completion: the same suggestion, one line, as one item for clients without inline completion."""
    text = await _suggestion(ls, params.text_document.uri, params.position, multiline=False)
    if text is None:
        return None
    item = types.CompletionItem(
        label=text.strip(),
        kind=types.CompletionItemKind.Text,
        insert_text_format=types.InsertTextFormat.PlainText,
        # Insert exactly at the cursor: the client's own idea of "the word" would eat text.
        text_edit=types.TextEdit(range=types.Range(start=params.position, end=params.position), new_text=text),
    )
    # Incomplete: the suggestion depends on every character typed, so the client asks again.
    return types.CompletionList(is_incomplete=True, items=[item])
