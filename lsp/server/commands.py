"""The workspace/executeCommand commands on a document: loopcoder.review (findings as diagnostics),
loopcoder.explain, loopcoder.hint and loopcoder.edit. Each runs in a worker with work-done progress,
in its own engine session per document (`uri#action`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from lsprotocol import types
from pygls.uris import to_fs_path

from loopcoder.engine.errors import InvalidRequestError, LoopcoderError
from loopcoder.lsp.features import actions, hints, review
from loopcoder.lsp.features.prompts import ActionOptions, Span
from loopcoder.lsp.features.documents import Document, Position, Range
from loopcoder.lsp.features.review import DocumentOrigin
from loopcoder.lsp.server.code_actions import publish_findings
from loopcoder.lsp.server.common import span_of, workspace_edit
from loopcoder.lsp.server.state import LoopcoderServer
from loopcoder.lsp.server.window import Progress, show_markdown

ACTIONS = ("review", "explain", "hint", "edit")  # each keeps its own engine session per document: `uri#action`


def _argument(args: tuple, command: str) -> dict:
    if len(args) != 1 or not isinstance(args[0], dict):
        raise InvalidRequestError(f"{command} takes one argument, an object like {{\"uri\": ..., \"range\": ...}}")
    if not isinstance(args[0].get("uri"), str):
        raise InvalidRequestError(f"{command}: the argument needs \"uri\", the document's URI as a string")
    return args[0]


def _lsp_range(value: Any, command: str) -> Range | None:
    """A JSON range argument, checked; None for none."""
    if value is None:
        return None
    try:
        (sl, sc), (el, ec) = ((value[k]["line"], value[k]["character"]) for k in ("start", "end"))
    except (TypeError, KeyError):
        raise InvalidRequestError(f"{command}: range must look like {{\"start\": {{\"line\": 0, \"character\": 0}}, "
                                  f"\"end\": {{...}}}}, not {value!r}") from None
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (sl, sc, el, ec)):
        raise InvalidRequestError(f"{command}: range positions must be integers, not {value!r}")
    return Range(Position(sl, sc), Position(el, ec))


def _target(ls: LoopcoderServer, args: tuple, command: str) -> tuple[str, Document, Span | None]:
    """The document and lines a command's {uri, range?} argument names, checked."""
    arg = _argument(args, command)
    uri = arg["uri"]
    document = ls.documents.get(uri)
    return uri, document, span_of(ls, document, _lsp_range(arg.get("range"), command))


def _action_options(ls: LoopcoderServer) -> ActionOptions:
    s = ls.settings
    return ActionOptions(max_new_tokens=s.action_tokens, context_tokens=s.context_tokens, temperature=s.temperature)


async def _run_action(ls: LoopcoderServer, uri: str, name: str, title: str, work: Callable) -> Any:
    """Run `work(engine, text, cancelled, progress)` for document `uri` in a worker, with progress."""
    document = ls.documents.get(uri)
    text, settings = document.text, ls.settings
    ticket = ls.requests.begin(f"{uri}#{name}")
    async with Progress(ls, title, settings.action_tokens) as progress:
        return await ls.in_worker(ticket, lambda: work(ls.engine.get(settings), text, ticket.cancelled, progress.tokens))


async def review_command(ls: LoopcoderServer, *args) -> dict:
    """loopcoder.review {uri, range?}: findings as diagnostics; returns them."""
    uri, document, span = _target(ls, args, "loopcoder.review")
    language, options = document.language_id, _action_options(ls)
    version = document.version
    origin = _origin(ls, uri)
    reviewed = await _run_action(ls, uri, "review", "loopcoder: reviewing", lambda engine, text, cancelled, progress:
                                 review.review(engine, uri, text, span, language, options, cancelled, progress, origin))
    found = reviewed.findings
    for note in reviewed.notes:  # an analyzer missing or failing: the review went on without it
        ls.window_log_message(types.LogMessageParams(type=types.MessageType.Warning, message=f"loopcoder: {note}"))
    if not reviewed.complete:
        ls.window_log_message(types.LogMessageParams(type=types.MessageType.Warning, message=(
            f"loopcoder: the review of {uri} ran out of tokens (actionTokens={options.max_new_tokens}); "
            f"showing the {len(found)} finding(s) it completed")))
    answer = {"complete": reviewed.complete, "notes": reviewed.notes, "analyzers": reviewed.analyzers}
    if uri not in ls.documents:
        return {"findings": [], **answer}
    document = ls.documents.get(uri)
    if document.version != version:  # edited meanwhile: keep the findings whose lines are still there
        found = review.relocate(found, document.text)
    # A review of a selection replaces the findings inside it, keeps the others.
    kept = [f for f in ls.findings.get(uri, []) if span is not None and not span.first <= f.line <= span.last]
    ls.findings[uri] = sorted(kept + found, key=lambda f: f.line)
    publish_findings(ls, uri)
    return {"findings": [f.as_json() for f in found], **answer}


def _origin(ls: LoopcoderServer, uri: str) -> DocumentOrigin:
    """What the analyzers need to know of a document: its file, whose ruff settings apply (a notebook
    cell's: its notebook's), and whether it is a notebook cell."""
    notebook = ls.notebooks.notebook_of(uri)
    file_uri = notebook or uri
    path = to_fs_path(file_uri) if file_uri.startswith("file:") else None
    return DocumentOrigin(Path(path) if path else None, notebook_cell=notebook is not None)


async def explain_command(ls: LoopcoderServer, *args) -> dict:
    """loopcoder.explain {uri, range?}: markdown, shown as a document where the client can, else as a message."""
    uri, document, span = _target(ls, args, "loopcoder.explain")
    language, options = document.language_id, _action_options(ls)
    markdown = await _run_action(ls, uri, "explain", "loopcoder: explaining", lambda engine, text, cancelled, progress:
                                 actions.explain(engine, uri, text, span, language, options, cancelled, progress))
    shown = await show_markdown(ls, markdown or "_The model gave no explanation._", "explanation")
    return {"markdown": markdown, "uri": shown}


async def hint_command(ls: LoopcoderServer, *args) -> dict:
    """loopcoder.hint {uri, range?}: a Socratic question, shown as a message; an answer with code is refused
    (hints.socratic), and after a refused retry the command fails with a message that says so."""
    uri, document, span = _target(ls, args, "loopcoder.hint")
    language, options = document.language_id, _action_options(ls)
    text = await _run_action(ls, uri, "hint", "loopcoder: thinking of a hint", lambda engine, text, cancelled, progress:
                             hints.hint(engine, uri, text, span, language, options, cancelled, progress))
    ls.window_show_message(types.ShowMessageParams(type=types.MessageType.Info, message=f"Hint: {text}"))
    return {"hint": text}


async def edit_command(ls: LoopcoderServer, *args) -> dict:
    """loopcoder.edit {uri, range, instruction}: rewrite the selection and apply it with workspace/applyEdit."""
    arg = _argument(args, "loopcoder.edit")
    uri, instruction = arg.get("uri"), arg.get("instruction")
    document = ls.documents.get(uri)
    rng = _lsp_range(arg.get("range"), "loopcoder.edit")
    if rng is None:
        start, end = 0, len(document.text)
    else:
        start, end = (document.offset_at(p, ls.documents.encoding) for p in rng)
    if end < start:
        raise InvalidRequestError("loopcoder.edit: the range ends before it starts")
    language, options, version = document.language_id, _action_options(ls), document.version
    new_text = await _run_action(ls, uri, "edit", "loopcoder: editing", lambda engine, text, cancelled, progress:
                                 actions.edit(engine, uri, text, start, end, instruction, language, options, cancelled, progress))
    document = ls.documents.get(uri)
    if document.version != version:
        raise LoopcoderError(f"{uri} changed while the edit was being written; run loopcoder.edit again")
    lsp_range = types.Range(start=_lsp_position_at(ls, document, start), end=_lsp_position_at(ls, document, end))
    edit = workspace_edit(ls, document, [types.TextEdit(range=lsp_range, new_text=new_text)])
    response = await ls.workspace_apply_edit_async(types.ApplyWorkspaceEditParams(edit=edit, label=f"loopcoder: {instruction}"))
    return {"applied": bool(response.applied), "newText": new_text, "failureReason": response.failure_reason}


def _lsp_position_at(ls: LoopcoderServer, document: Document, offset: int) -> types.Position:
    p = document.position_at(offset, ls.documents.encoding)
    return types.Position(line=p.line, character=p.character)
