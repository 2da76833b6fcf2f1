"""Repository context in the server: the loopcoder.repoContext command (what a completion at a
position would be given, for the user and the tests) and workspace/didChangeWatchedFiles."""

from __future__ import annotations

from lsprotocol import types

from loopcoder.engine.errors import InvalidRequestError
from loopcoder.lsp.features.documents import Position
from loopcoder.lsp.server.common import file_path, notification
from loopcoder.lsp.server.state import LoopcoderServer


async def repo_context_command(ls: LoopcoderServer, *args) -> dict:
    """loopcoder.repoContext {uri, position: {line, character}}: the repository context a completion there
    gets ({tokens, files, text, stats}); `tokens` 0 when there is none."""
    command = "loopcoder.repoContext"
    if len(args) != 1 or not isinstance(args[0], dict) or not isinstance(args[0].get("uri"), str):
        raise InvalidRequestError(f"{command} takes one argument, an object like "
                                  "{\"uri\": \"file:///a.py\", \"position\": {\"line\": 0, \"character\": 0}}")
    uri, position = args[0]["uri"], args[0].get("position") or {"line": 0, "character": 0}
    if not (isinstance(position, dict) and isinstance(position.get("line"), int)
            and isinstance(position.get("character"), int)):
        raise InvalidRequestError(f"{command}: \"position\" must be {{\"line\": int, \"character\": int}}")
    provider = ls.repo_context
    if provider is None:
        return {"tokens": 0, "files": [], "text": "", "stats": None,
                "reason": "no workspace folder was opened, so there is no repository to draw on"}
    document = ls.documents.get(uri)
    offset = document.offset_at(Position(position["line"], position["character"]), ls.documents.encoding)
    path, text, settings = file_path(uri), document.text, ls.settings
    ticket = ls.requests.begin(f"{uri}#repoContext", supersede=False)

    def work() -> dict:
        tokenizer = ls.engine.get(settings).tokenizer
        ids = provider.context_ids(tokenizer, path, text, offset) if path and tokenizer is not None else None
        chosen = provider.chosen(path) if path else []
        return {"tokens": len(ids) if ids else 0, "files": sorted({provider.index.relative(c.path) or c.path
                                                                   for c in chosen}),
                "text": tokenizer.decode([*ids.before, *ids.lead]) if ids else "", "stats": provider.stats()}

    return await ls.in_worker(ticket, work)


@notification
def did_change_watched_files(ls: LoopcoderServer, params: types.DidChangeWatchedFilesParams) -> None:
    """workspace/didChangeWatchedFiles: files created, changed or deleted on disk follow into the index."""
    provider = ls.repo_context
    if provider is None:
        return
    for change in params.changes:
        path = file_path(change.uri)
        if path is None:
            continue
        if change.type == types.FileChangeType.Deleted:
            provider.file_deleted(path)
        else:
            provider.file_changed(path)
