"""Review findings as diagnostics (textDocument/publishDiagnostics) and textDocument/codeAction:
a quick fix per finding that has one, and the review, explain and hint commands on the selection."""

from __future__ import annotations

from lsprotocol import types

from loopcoder.lsp.features.documents import Document
from loopcoder.lsp.features.review import Finding
from loopcoder.lsp.server.common import lsp_position, request, span_of, to_range, workspace_edit
from loopcoder.lsp.server.state import LoopcoderServer

ACTION_KIND = "refactor.loopcoder"
SEVERITY = {"error": types.DiagnosticSeverity.Error, "warning": types.DiagnosticSeverity.Warning,
            "info": types.DiagnosticSeverity.Information}


def _finding_range(ls: LoopcoderServer, document: Document, f: Finding) -> types.Range:
    enc = ls.documents.encoding
    return types.Range(start=lsp_position(document, f.line, f.start, enc), end=lsp_position(document, f.line, f.end, enc))


def _line_range(ls: LoopcoderServer, document: Document, f: Finding) -> types.Range:
    """The whole of the finding's line, line ending excluded: what its fix replaces."""
    line_text = document.text[document.starts[f.line] :].split("\n", 1)[0].rstrip("\r")
    end = lsp_position(document, f.line, len(line_text), ls.documents.encoding)
    return types.Range(start=types.Position(line=f.line, character=0), end=end)


def _diagnostic(ls: LoopcoderServer, document: Document, f: Finding) -> types.Diagnostic:
    return types.Diagnostic(range=_finding_range(ls, document, f), message=f.message, severity=SEVERITY[f.severity],
                            source="loopcoder", code=f.category, data={"replacement": f.replacement})


def publish_findings(ls: LoopcoderServer, uri: str) -> None:
    document = ls.documents.get(uri)
    diagnostics = [_diagnostic(ls, document, f) for f in ls.findings.get(uri, [])]
    ls.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=uri, diagnostics=diagnostics,
                                                                        version=document.version))


def clear_findings(ls: LoopcoderServer, uri: str) -> None:
    if ls.findings.pop(uri, None):
        ls.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=uri, diagnostics=[]))


def _fix_action(ls: LoopcoderServer, document: Document, f: Finding) -> types.CodeAction:
    edit = types.TextEdit(range=_line_range(ls, document, f), new_text=f.replacement)
    summary = f.message if len(f.message) <= 72 else f.message[:71] + "…"
    return types.CodeAction(title=f"loopcoder: fix — {summary}", kind=types.CodeActionKind.QuickFix,
                            diagnostics=[_diagnostic(ls, document, f)], is_preferred=True,
                            edit=workspace_edit(ls, document, [edit]))


def _overlaps(f: Finding, r: types.Range) -> bool:
    return r.start.line <= f.line <= r.end.line


@request
async def code_action(ls: LoopcoderServer, params: types.CodeActionParams) -> list[types.CodeAction]:
    """textDocument/codeAction: fixes for the review findings in range, then review, explain and hint."""
    uri, rng = params.text_document.uri, params.range
    document = ls.documents.get(uri)
    span_of(ls, document, to_range(rng))  # reject a range outside the document
    wanted = params.context.only
    result = [_fix_action(ls, document, f) for f in ls.findings.get(uri, []) if f.replacement and _overlaps(f, rng)]
    argument = {"uri": uri, "range": {"start": {"line": rng.start.line, "character": rng.start.character},
                                      "end": {"line": rng.end.line, "character": rng.end.character}}}
    for name, title in (("review", "Review"), ("explain", "Explain"), ("hint", "Hint")):
        kind = f"{ACTION_KIND}.{name}"
        result.append(types.CodeAction(title=f"loopcoder: {title}", kind=kind,
                                       command=types.Command(title=f"loopcoder: {title}", command=f"loopcoder.{name}",
                                                             arguments=[argument])))
    if wanted:
        result = [a for a in result if any(a.kind == k or str(a.kind).startswith(f"{k}.") for k in wanted)]
    return result
