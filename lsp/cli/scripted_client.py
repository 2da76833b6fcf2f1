"""An LSP client for scripts that start `loopcoder lsp` themselves: the demo, the latency
benchmark and the end-to-end tests. pygls's client, reading the server's stderr as it comes
and code actions that carry a command as what they are."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Union

from lsprotocol import types
from pygls.lsp.client import LanguageClient


def read_code_actions_right(converter) -> None:
    """Make `converter` read a code action that carries a command as a CodeAction.

    lsprotocol structures any object with a "command" key as a Command, though a
    CodeAction may carry a command too (ours do); VS Code and Neovim read them right.
    """

    def command_or_action(obj, _):
        return converter.structure(obj, types.Command if isinstance(obj.get("command"), str) else types.CodeAction)

    converter.register_structure_hook(Union[types.Command, types.CodeAction], command_or_action)


class ScriptedClient(LanguageClient):
    """pygls's client for scripts that start a server: it reads the server's stderr as it
    comes (pygls pipes it, and a full pipe blocks the server) and keeps its last lines."""

    def __init__(self, name: str, keep_lines: int = 100) -> None:
        super().__init__(name, "1")
        self.stderr: deque[str] = deque(maxlen=keep_lines)  # the server's last words, shown if it fails
        self._drain: asyncio.Task | None = None
        read_code_actions_right(self.protocol._converter)

    async def start_io(self, cmd: str, *args, **kwargs):
        await super().start_io(cmd, *args, **kwargs)
        self._drain = asyncio.create_task(self._read_stderr(self._server.stderr))

    async def _read_stderr(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            self.stderr.append(line.decode("utf-8", "replace").rstrip())
