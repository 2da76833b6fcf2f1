"""Errors at the HTTP boundary: `LoopcoderError` to a status, and the error body of each API family.

OpenAI clients read `{"error": {"message", "type", "param", "code"}}`, TGI clients
`{"error": "...", "error_type": "..."}`; the path decides which one a request gets (`/v1/`
is OpenAI's), so either family's client library shows the message.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi.responses import JSONResponse

from ...errors import (
    CancelledError,
    EngineUnavailableError,
    InvalidRequestError,
    KVCacheOutOfMemoryError,
    LoopcoderError,
)

log = logging.getLogger(__name__)

_STATUS: tuple[tuple[type[LoopcoderError], int], ...] = (
    (InvalidRequestError, 400),
    (KVCacheOutOfMemoryError, 503),
    (EngineUnavailableError, 503),
    (CancelledError, 503),
)

_OPENAI_TYPE = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
                413: "invalid_request_error", 422: "invalid_request_error", 503: "service_unavailable"}
# TGI's error types: "validation" for what the client must change, "generation" for the server's failures.
_TGI_TYPE = {400: "validation", 401: "authentication", 404: "not_found", 413: "validation", 422: "validation",
             503: "overloaded"}


def status_of(exc: BaseException) -> int:
    """The HTTP status for an engine error: 400 bad request, 503 no room or no engine, else 500."""
    for kind, status in _STATUS:
        if isinstance(exc, kind):
            return status
    return 500


def message_of(exc: BaseException) -> str:
    """The message a client gets; a bug (not a LoopcoderError) is logged with its traceback here."""
    if isinstance(exc, LoopcoderError):
        log.info("HTTP request failed: %s: %s", type(exc).__name__, exc)
        return str(exc)
    log.error("HTTP request failed with an internal error", exc_info=exc)
    return f"internal error ({type(exc).__name__}): {exc}; please report it"


def is_openai_path(path: str) -> bool:
    return path.startswith("/v1/")


def error_body(path: str, status: int, message: str, param: str | None = None) -> dict[str, Any]:
    client_error = status < 500  # a status without its own type (405, 415...) still says whose mistake it was
    if is_openai_path(path):
        kind = _OPENAI_TYPE.get(status, "invalid_request_error" if client_error else "server_error")
        return {"error": {"message": message, "type": kind, "param": param, "code": status}}
    return {"error": message, "error_type": _TGI_TYPE.get(status, "validation" if client_error else "generation")}


def error_response(path: str, status: int, message: str, param: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(path, status, message, param), status_code=status, headers=headers)


def exception_response(path: str, exc: BaseException) -> JSONResponse:
    return error_response(path, status_of(exc), message_of(exc))
