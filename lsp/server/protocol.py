"""pygls's protocol, with an answer for every request and a door that can be locked.

pygls 2.1 only logs a request whose params do not fit lsprotocol's types ("Unable to
deserialize message"), and the client waits forever. `LoopcoderProtocol.structure_message`
turns such a message into a `RejectedMessage`: a request gets a JSON-RPC error (InvalidParams,
-32602, naming the field, `validation.describe`), a notification one warning (it cannot be
answered, and nothing of it is applied; `on_rejected` says what it still changes: a didChange
that cannot be read puts its document out of sync). A message that is no JSON-RPC request at all but
carries an id gets InvalidRequest (-32600).

With a token (`loopcoder lsp --tcp ... --tcp-token-file FILE`), each connection must present it
in initialize's `initializationOptions.token` first: a wrong or missing token is answered with
an error, and every later request with ServerNotInitialized (-32002) until an initialize
carries the right one. Notifications and responses from such a connection are dropped.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import attrs
from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams, JsonRpcInvalidRequest, JsonRpcServerNotInitialized
from pygls.protocol import LanguageServerProtocol

from loopcoder.engine.serving.access import token_matches
from loopcoder.lsp.server.validation import describe

log = logging.getLogger(__name__)

TOKEN_OPTION = "token"  # initializationOptions' key for the TCP token; never a setting


@attrs.define
class RejectedMessage:
    """A request or notification that is not handled: `code` and `reason` say why."""

    method: str
    id: int | str | None  # None: a notification, which cannot be answered
    code: int
    reason: str
    params: Any = None  # as the client sent them
    jsonrpc: str = "2.0"


class LoopcoderProtocol(LanguageServerProtocol):
    def __init__(self, server, converter):
        super().__init__(server, converter)
        self.token: str | None = None  # required in initialize when set (TCP off loopback)
        self.admitted = True  # whether this connection may talk: it sent the token, or none is needed
        # method -> what to do about a notification of it that could not be read (the server's state may depend on it)
        self.on_rejected: dict[str, Callable[[RejectedMessage], None]] = {}

    def require_token(self, token: str) -> None:
        self.token = token
        self.admitted = False

    def connection_made(self) -> None:
        """A new client: it must show the token again."""
        self.admitted = self.token is None

    def structure_message(self, data: dict[str, Any]) -> Any:
        method = data.get("method")
        if "method" not in data:  # a response to one of our requests: pygls's own handling
            return super().structure_message(data)
        msg_id = data.get("id")
        answerable = isinstance(msg_id, (int, str)) and not isinstance(msg_id, bool)
        if "id" in data and not answerable:
            log.warning("ignored a message whose id is %r: a JSON-RPC id is a string or an integer", msg_id)
            return None
        if data.get("jsonrpc") != "2.0" or not isinstance(method, str):
            return RejectedMessage(str(method), msg_id, JsonRpcInvalidRequest.CODE,
                                   'not a JSON-RPC 2.0 message: it needs "jsonrpc": "2.0" and a string "method"')
        message_type = self.get_message_type(method)
        if message_type is None:  # not an LSP method: pygls answers MethodNotFound or ignores it
            try:
                return super().structure_message(data)
            except Exception as error:  # pygls has logged it; the client still gets an answer
                reason = f"{method}: the message cannot be read: {error.__cause__ or error}"
                return RejectedMessage(method, msg_id, JsonRpcInvalidRequest.CODE, reason)
        if "id" in data and "id" not in attrs.fields_dict(message_type):
            return RejectedMessage(method, msg_id, JsonRpcInvalidRequest.CODE, f"{method} is a notification: send it without an id")
        try:
            return self._converter.structure(data, message_type)
        except Exception as error:  # any failure to fit the type is the client's params
            return RejectedMessage(method, msg_id, JsonRpcInvalidParams.CODE, describe(error, data), data.get("params"))

    def handle_message(self, message: Any) -> None:
        if message is None:
            return
        if isinstance(message, RejectedMessage):
            self._reject(message)
            return
        if not self.admitted and not self._admit(message):
            return
        if isinstance(message, types.InitializeRequest) and isinstance(message.params.initialization_options, dict):
            message.params.initialization_options.pop(TOKEN_OPTION, None)
        super().handle_message(message)

    def _reject(self, message: RejectedMessage) -> None:
        if message.id is None:
            log.warning("ignored notification %s: %s", message.method, message.reason)
            self.notify(types.WINDOW_LOG_MESSAGE, types.LogMessageParams(
                type=types.MessageType.Warning, message=f"loopcoder: ignored notification {message.method}: {message.reason}"))
            follow_up = self.on_rejected.get(message.method)
            if follow_up is not None:
                follow_up(message)
            return
        log.warning("refused request %s (id %r): %s", message.method, message.id, message.reason)
        self._send_response(message.id, error=types.ResponseError(code=message.code, message=message.reason))

    def _admit(self, message: Any) -> bool:
        """Whether `message` may pass on a connection that has not shown the token; answers the requests that may not."""
        msg_id = getattr(message, "id", None)
        method = getattr(message, "method", None)
        if isinstance(message, types.InitializeRequest):
            options = message.params.initialization_options
            given = options.get(TOKEN_OPTION) if isinstance(options, dict) else None
            if token_matches(given, self.token):
                self.admitted = True
                return True
            log.warning("refused initialize: %s token", "a wrong" if given is not None else "no")
            self._send_response(msg_id, error=types.ResponseError(
                code=JsonRpcInvalidRequest.CODE,
                message="this server requires a token: send initializationOptions.token, the contents of the "
                        "server's --tcp-token-file"))
        elif method is not None and msg_id is not None:
            self._send_response(msg_id, error=types.ResponseError(
                code=JsonRpcServerNotInitialized.CODE,
                message=f"{method} refused: initialize with the server's token (initializationOptions.token) first"))
        else:
            log.warning("dropped %s from a client that has not shown the token", method or "a response")
        return False
