"""The pygls language server: `FEATURES` and `COMMANDS` map each LSP method and command to its handler.

Each handler only translates: lsprotocol types in, a call into `lsp/features/` (where the logic
lives, free of pygls), lsprotocol types out. Engine work runs in a thread pool, so the event loop
keeps reading didChange and $/cancelRequest while a completion decodes. `LoopcoderError` is mapped
to a JSON-RPC error (requests) or a window/showMessage (notifications) here, at the boundary, and
logged with window/logMessage; the server itself never dies of one.

The modules, by what they hold:
    state.py          the server object: settings, documents, notebooks, the engine, the worker pool
    common.py         the error-mapping decorators; lsprotocol <-> lsp/features/documents.py conversions
    lifecycle.py      initialize, initialized, shutdown, workspace/didChangeConfiguration
    sync.py           textDocument/didOpen, didChange, didSave, didClose
    notebooks.py      notebookDocument/didOpen, didChange, didSave, didClose
    completion.py     textDocument/inlineCompletion and textDocument/completion
    code_actions.py   textDocument/codeAction; review findings published as diagnostics
    commands.py       loopcoder.review, .explain, .hint and .edit (workspace/executeCommand)
    scaffold_form.py  loopcoder.scaffoldForm
    repo_context.py   loopcoder.repoContext, workspace/didChangeWatchedFiles (the workspace index)
    window.py         work-done progress and window/showDocument for the commands
    transport.py      the read loops on stdio and TCP (in place of pygls's), the TCP connection rule
    framing.py        Content-Length framing, bytes in and messages out: bounded, resynchronising
    protocol.py       pygls's protocol with -32602 for params that do not fit, and the TCP token
    validation.py     strict params (no 1.5 for an integer) and the error naming the field
"""

from __future__ import annotations

import functools
from typing import Any, Callable

from lsprotocol import types

from loopcoder.lsp.features.settings import ServerSettings
from loopcoder.lsp.server.code_actions import ACTION_KIND, code_action
from loopcoder.lsp.server.commands import edit_command, explain_command, hint_command, review_command
from loopcoder.lsp.server.common import request
from loopcoder.lsp.server.completion import completion, inline_completion
from loopcoder.lsp.server.lifecycle import did_change_configuration, initialize, initialized, shutdown
from loopcoder.lsp.server.notebooks import did_change_notebook, did_close_notebook, did_open_notebook, did_save_notebook
from loopcoder.lsp.server.repo_context import did_change_watched_files, repo_context_command
from loopcoder.lsp.server.scaffold_form import scaffold_command
from loopcoder.lsp.server.state import LoopcoderServer
from loopcoder.lsp.server.sync import change_rejected, did_change, did_close, did_open, did_save

__all__ = ["COMMANDS", "FEATURES", "LoopcoderServer", "build_server"]

COMMANDS: list[tuple[str, Callable]] = [
    ("loopcoder.review", review_command),
    ("loopcoder.explain", explain_command),
    ("loopcoder.hint", hint_command),
    ("loopcoder.edit", edit_command),
    ("loopcoder.scaffoldForm", scaffold_command),
    ("loopcoder.repoContext", repo_context_command),
]


FEATURES: list[tuple[str, Any, Callable]] = [
    (types.INITIALIZE, None, initialize),
    (types.INITIALIZED, None, initialized),
    (types.SHUTDOWN, None, shutdown),
    (types.WORKSPACE_DID_CHANGE_CONFIGURATION, None, did_change_configuration),
    (types.WORKSPACE_DID_CHANGE_WATCHED_FILES, None, did_change_watched_files),
    (types.TEXT_DOCUMENT_DID_OPEN, None, did_open),
    (types.TEXT_DOCUMENT_DID_CHANGE, None, did_change),
    (types.TEXT_DOCUMENT_DID_SAVE, types.SaveOptions(include_text=False), did_save),
    (types.TEXT_DOCUMENT_DID_CLOSE, None, did_close),
    (types.NOTEBOOK_DOCUMENT_DID_OPEN, None, did_open_notebook),
    (types.NOTEBOOK_DOCUMENT_DID_CHANGE, None, did_change_notebook),
    (types.NOTEBOOK_DOCUMENT_DID_SAVE, None, did_save_notebook),
    (types.NOTEBOOK_DOCUMENT_DID_CLOSE, None, did_close_notebook),
    (types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions(), inline_completion),
    (types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions(), completion),
    (types.TEXT_DOCUMENT_CODE_ACTION,
     types.CodeActionOptions(code_action_kinds=[types.CodeActionKind.QuickFix, ACTION_KIND]), code_action),
]


# What a notification that could not be read still changes: the server's copy of a document.
REJECTED: list[tuple[str, Callable]] = [
    (types.TEXT_DOCUMENT_DID_CHANGE, change_rejected),
]


def build_server(settings: ServerSettings = ServerSettings()) -> LoopcoderServer:
    """A server with every feature registered; `settings` are the defaults initializationOptions override."""
    server = LoopcoderServer(settings)
    for method, options, handler in FEATURES:
        server.feature(method, options)(handler)
    for name, handler in COMMANDS:
        server.command(name)(request(handler))
    for method, handler in REJECTED:
        server.protocol.on_rejected[method] = functools.partial(handler, server)
    return server
