"""initialize, initialized and shutdown, and the settings a client pushes or the server pulls
(workspace/didChangeConfiguration, workspace/configuration)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from lsprotocol import types

from loopcoder.engine.errors import LoopcoderError
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
    """initialized: start reading the model while the editor opens its first file."""
    ls.engine.start(ls.settings)


def shutdown(ls: LoopcoderServer, params: None) -> None:
    """shutdown: stop queued engine work (running work sees its tickets cancelled)."""
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
