"""The engine daemon's wire format: length-prefixed msgpack frames (docs/protocol.md).

A frame is a 4-byte big-endian length N, then N bytes of msgpack holding one map. Every
map carries `v` (PROTOCOL_VERSION). A request has `id` (an integer the client picks,
unique among its requests in flight) and `op`; the server answers with frames of the
same `id` and a `type`: zero or more `chunk`s (streamed tokens), then exactly one
`result` or `error`.

Nothing here does I/O: `encode` makes a frame, `FrameDecoder` cuts a byte stream into
maps and raises `ProtocolError` on anything malformed, so both ends and the fuzz tests
share one parser.
"""

from __future__ import annotations

import struct
from dataclasses import asdict, fields
from typing import Any

import msgpack

from ..errors import (
    CancelledError,
    ConstrainedDecodingError,
    IncompleteOutputError,
    InternalError,
    InvalidRequestError,
    KVCacheOutOfMemoryError,
    LoopcoderError,
    TokenizerError,
    shown,
)
from ..sampling import SamplingParams

PROTOCOL_VERSION = 1
MAX_FRAME_BYTES = 16 << 20  # a 1M-token prompt is about 5 MB of msgpack
MAX_ERROR_CHARS = 2000  # an error message on the wire: never the megabytes a client sent
_HEADER = struct.Struct(">I")

OPS = frozenset({"hello", "open", "sync", "close", "generate", "cancel", "stats", "shutdown"})

# Error codes on the wire, both ways. Unknown codes decode as a plain LoopcoderError.
ERROR_CODES: dict[str, type[LoopcoderError]] = {
    "invalid_request": InvalidRequestError,
    "kv_cache_full": KVCacheOutOfMemoryError,
    "cancelled": CancelledError,
    "incomplete_output": IncompleteOutputError,
    "constrained_decoding": ConstrainedDecodingError,
    "tokenizer": TokenizerError,
    "internal": InternalError,
}


class ProtocolError(LoopcoderError):
    """A frame that breaks the protocol: the connection that sent it is closed after an error frame."""


def encode(message: dict[str, Any]) -> bytes:
    body = msgpack.packb({"v": PROTOCOL_VERSION, **message}, use_bin_type=True)
    if len(body) > MAX_FRAME_BYTES:
        raise InvalidRequestError(f"message of {len(body)} bytes exceeds the {MAX_FRAME_BYTES}-byte frame limit")
    return _HEADER.pack(len(body)) + body


class FrameDecoder:
    """Feed bytes in any pieces; get back each complete frame's map."""

    def __init__(self, max_frame_bytes: int = MAX_FRAME_BYTES) -> None:
        self._buffer = bytearray()
        self._max = max_frame_bytes

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        self._buffer += data
        messages = []
        while len(self._buffer) >= _HEADER.size:
            (length,) = _HEADER.unpack_from(self._buffer)
            if length > self._max:
                raise ProtocolError(f"frame of {length} bytes exceeds the {self._max}-byte limit")
            if len(self._buffer) < _HEADER.size + length:
                break
            body = bytes(self._buffer[_HEADER.size : _HEADER.size + length])
            del self._buffer[: _HEADER.size + length]
            messages.append(decode_body(body))
        return messages


def decode_body(body: bytes) -> dict[str, Any]:
    try:
        message = msgpack.unpackb(body, raw=False, strict_map_key=True)
    except msgpack.StackError:
        raise ProtocolError("frame is not valid msgpack: nested deeper than the decoder allows") from None
    except Exception as exc:  # msgpack raises several types (ExtraData, FormatError, ValueError, ...)
        raise ProtocolError(f"frame is not valid msgpack: {exc or type(exc).__name__}") from None
    if not isinstance(message, dict):
        raise ProtocolError(f"frame must hold a map, got {type(message).__name__}")
    version = message.get("v")
    if version != PROTOCOL_VERSION:
        raise ProtocolError(f"unsupported protocol version {shown(version)}: this side speaks {PROTOCOL_VERSION}")
    return message


# -- request fields ---------------------------------------------------------------------

def require(message: dict, name: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
    """message[name], checked: InvalidRequestError names the field when it is missing or of the wrong type."""
    if name not in message:
        if default is not ...:
            return default
        raise InvalidRequestError(f"field {name!r} is required")
    value = message[name]
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _as_tuple(kind)):
        expected = " or ".join(k.__name__ for k in _as_tuple(kind))
        raise InvalidRequestError(f"field {name!r} must be {expected}, got {type(value).__name__}")
    return value


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def token_ids(message: dict, name: str = "ids") -> list[int]:
    ids = require(message, name, list)
    if not all(isinstance(t, int) and not isinstance(t, bool) for t in ids):
        raise InvalidRequestError(f"field {name!r} must be a list of integer token ids")
    return ids


_PARAM_FIELDS = {f.name for f in fields(SamplingParams)}


def params_to_wire(params: SamplingParams) -> dict[str, Any]:
    wire = asdict(params)
    wire["stop"], wire["stop_token_ids"] = list(params.stop), list(params.stop_token_ids)
    return {k: v for k, v in wire.items() if v is not None}


def params_from_wire(value: Any) -> SamplingParams:
    if not isinstance(value, dict):
        raise InvalidRequestError(f"field 'params' must be a map, got {type(value).__name__}")
    unknown = sorted(set(value) - _PARAM_FIELDS, key=str)
    if unknown:
        more = f" and {len(unknown) - 3} more" if len(unknown) > 3 else ""
        raise InvalidRequestError(f"unknown sampling parameter(s): {', '.join(map(shown, unknown[:3]))}{more}")
    try:
        return SamplingParams(**value)
    except TypeError as exc:
        raise InvalidRequestError(f"bad sampling parameters: {exc}") from None


# -- errors -----------------------------------------------------------------------------

def error_frame(request_id: Any, exc: BaseException) -> dict[str, Any]:
    code = next((c for c, kind in ERROR_CODES.items() if type(exc) is kind), None)
    if code is None:
        code = "protocol" if isinstance(exc, ProtocolError) else next(
            (c for c, kind in ERROR_CODES.items() if isinstance(exc, kind)), "internal")
    message = str(exc) if isinstance(exc, LoopcoderError) else f"{type(exc).__name__}: {exc}"
    if len(message) > MAX_ERROR_CHARS:
        message = f"{message[:MAX_ERROR_CHARS]}… (cut from {len(message)} characters)"
    return {"id": request_id, "type": "error", "code": code, "message": message}


def error_from_frame(frame: dict) -> LoopcoderError:
    if frame.get("code") == "protocol":
        return ProtocolError(str(frame.get("message", "")))
    kind = ERROR_CODES.get(frame.get("code"), LoopcoderError)
    return kind(str(frame.get("message", "the engine reported an error without a message")))
