"""What the HTTP API bounds before any work: the request body's bytes and the prompt's characters.

A body over the byte limit is refused with 413 while it is read (by Content-Length up
front, else by counting), so it is never buffered whole. A prompt is refused with 400
before it is tokenized when its characters could not fit the model's context even at
PROMPT_CHARS_PER_TOKEN characters a token: tokenizing holds the GIL (and about 300 bytes a
token) for as long as the text is, and a prompt of millions of characters is an error in
any case.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ...api import EngineAPI
from ...errors import InvalidRequestError
from ..memory import TrimAfterBursts
from .errors import error_response

MAX_BODY_BYTES = 16 << 20  # the default of `loopcoder engine --http-max-body`
# Far more than any tokenizer's average (3 to 5 characters a token for code and prose), so
# only a prompt that cannot fit is refused; a run of spaces may take 16 a token, or more.
PROMPT_CHARS_PER_TOKEN = 32
LARGE_BODY_BYTES = 64 << 10  # after bodies this large, freed memory goes back to the system (memory.py)


class BodyTooLarge(StarletteHTTPException):
    def __init__(self, limit: int, size: int | None = None) -> None:
        size_text = f" ({size} bytes)" if size is not None else ""
        super().__init__(413, f"the request body{size_text} is larger than this server's limit of {limit} bytes "
                              f"(loopcoder engine --http-max-body)")


class LimitBody:
    """Refuse bodies over `limit` bytes with a JSON 413: by Content-Length up front, and by
    counting the bytes of a chunked body (FastAPI passes an HTTPException raised while it
    reads the body through to the error handlers). Starlette's own limit answers in plain text.
    A burst of requests with LARGE_BODY_BYTES or more is followed by a heap trim."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit
        self.trim = TrimAfterBursts()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = Headers(scope=scope).get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            size = int(length) if length.isdigit() else None
            await error_response(scope["path"], 413, BodyTooLarge(self.limit, size).detail)(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        try:
            await self.app(scope, counted, send)
        finally:
            if received >= LARGE_BODY_BYTES:
                self.trim.large_request_done()


def prompt_char_limit(engine: EngineAPI) -> int:
    """The most characters a prompt may have: the model's context at PROMPT_CHARS_PER_TOKEN each."""
    return engine.model_config.max_position_embeddings * PROMPT_CHARS_PER_TOKEN


def check_prompt_chars(engine: EngineAPI, chars: int, what: str = "the prompt") -> None:
    """Raise InvalidRequestError (400) when `chars` characters cannot fit the model's context."""
    limit = prompt_char_limit(engine)
    if chars > limit:
        context = engine.model_config.max_position_embeddings
        raise InvalidRequestError(
            f"{what} has {chars} characters, more than this server's limit of {limit} "
            f"({context} positions × {PROMPT_CHARS_PER_TOKEN} characters per token): it cannot fit the "
            f"model's context; shorten it")
