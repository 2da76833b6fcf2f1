"""initialize, initialized and shutdown, and the settings a client pushes or the server pulls
(workspace/didChangeConfiguration, workspace/configuration)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.uris import to_fs_path

from loopcoder.engine.errors import LoopcoderError
from loopcoder.lsp.features.context.provider import RepoContextProvider
from loopcoder.lsp.features.engine_loading import LazyEngine
from loopcoder.lsp.features.inline_completion import TypedThrough
from loopcoder.lsp.server.common import notification, rpc_error
from loopcoder.lsp.server.state import LoopcoderServer

log = logging.getLogger(__name__)


def initialize(ls: LoopcoderServer, params: types.InitializeParams) -> None:
    """initialize: apply initializationOptions; pygls negotiates positionEncoding and we follow it."""
    try:
        ls.settings = ls.settings.updated(params.initialization_options)
        encoding = ls.workspace.position_encoding or types.PositionEncodingKind.Utf16
        ls.documents.encoding = getattr(encoding, "value", encoding)
    except LoopcoderError as e:
        raise rpc_error(ls, e) from None


def initialized(ls: LoopcoderServer, params: types.InitializedParams) -> None:
    """initialized: start reading the model while the editor opens its first file, and index the
    workspace for repository context."""
    ls.engine.start(ls.settings)
    start_repo_context(ls)


def start_repo_context(ls: LoopcoderServer) -> None:
    """Index the workspace folders (or rootUri) in a thread of its own; completions use what is ready."""
    roots = [Path(p) for p in (to_fs_path(f.uri) for f in ls.workspace.folders.values()) if p]
    if not roots and ls.workspace.root_path:
        roots = [Path(ls.workspace.root_path)]
    roots = [root for root in roots if root.is_dir()]
    if not roots or ls.settings.repo_context_tokens == 0:
        return  # no workspace, or repoContextTokens 0: nothing is read (a later setting starts it)
    provider = RepoContextProvider(roots, ls.settings.repo_context_tokens)
    ls.repo_context = provider
    loop = asyncio.get_running_loop()

    def build() -> None:
        started = time.perf_counter()
        try:
            provider.build(cancelled=lambda: ls.repo_context is not provider)
        except Exception as e:  # a bug: completions go on without repository context
            log.exception("indexing the workspace failed")
            loop.call_soon_threadsafe(ls.log_error, f"indexing the workspace failed: {e!r}")
            return
        stats = provider.stats()
        message = (f"loopcoder: indexed {stats.get('files', 0)} files of {', '.join(map(str, roots))} for repository "
                   f"context in {time.perf_counter() - started:.1f} s")
        loop.call_soon_threadsafe(ls.window_log_message,
                                  types.LogMessageParams(type=types.MessageType.Info, message=message))

    threading.Thread(target=build, name="loopcoder-index", daemon=True).start()


def shutdown(ls: LoopcoderServer, params: None) -> None:
    """shutdown: stop queued engine work (running work sees its tickets cancelled) and indexing."""
    ls.repo_context = None
    for uri in ls.requests.keys():
        ls.requests.forget(uri)
    ls.workers.shutdown(wait=False, cancel_futures=True)
    if ls._scratch is not None:
        ls._scratch.cleanup()


ENGINE_KEYS = ("model", "device", "dtype", "quant", "backend", "socket", "threads", "url", "api_key", "tokenizer")  # a change of any of these loads the model anew


def apply_settings(ls: LoopcoderServer, options: Any) -> None:
    """Apply a settings object from the client; reload the model when it or where it runs changed."""
    if isinstance(options, dict) and isinstance(options.get("loopcoder"), dict):
        options = options["loopcoder"]  # {"loopcoder": {...}}, as VS Code-style clients nest them
    new = ls.settings.updated(options)
    old, ls.settings = ls.settings, new
    ls.typed_through = TypedThrough()  # another model or budget suggests other text
    if old.repo_context_tokens != new.repo_context_tokens:
        if ls.repo_context is not None:
            ls.repo_context.set_budget(new.repo_context_tokens)
        elif new.repo_context_tokens > 0:
            start_repo_context(ls)
    if any(getattr(old, key) != getattr(new, key) for key in ENGINE_KEYS) and ls.engine.started:
        log.info("model settings changed: loading the model again")
        ls.engine = LazyEngine()
        ls.engine.start(new)
    elif old.fim_template != new.fim_template and (engine := ls.engine.loaded()) is not None and engine.tokenizer:
        engine.tokenizer.use_fim_template(new.fim_template)  # prompts are built here: no reload


@notification
def did_change_configuration(ls: LoopcoderServer, params: types.DidChangeConfigurationParams) -> None:
    """workspace/didChangeConfiguration: settings pushed, or (null settings) to be pulled with workspace/configuration."""
    if params.settings not in (None, {}):
        apply_settings(ls, params.settings)
        return
    caps = ls.client_capabilities.workspace
    if caps is None or not caps.configuration:
        return
    loop = asyncio.get_running_loop()

    async def pull() -> None:
        try:
            items = await ls.workspace_configuration_async(
                types.ConfigurationParams(items=[types.ConfigurationItem(section="loopcoder")]))
            if items and items[0] is not None:
                notification(lambda ls, options: apply_settings(ls, options))(ls, items[0])
        except Exception as e:
            ls.log_error(f"could not read the loopcoder settings: {e}")

    loop.create_task(pull())
