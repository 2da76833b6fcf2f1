"""LSP's base protocol, bytes in and JSON values out: `Content-Length` headers, then a body.

Nothing here does I/O. `FrameDecoder.feed` takes whatever bytes arrived and returns the
messages they complete, and a `Problem` for each thing that could not be read. It never
stops reading and never holds more than one message in memory:

- header lines may end in CRLF (the specification) or a bare LF (some clients' bug); a bare
  CR inside a line makes the block unreadable (it may join garbage to the next header);
  header names are matched without regard to case, and headers other than
  Content-Length (Content-Type) are ignored;
- a header block that cannot be read (no Content-Length, a length that is not a number,
  a line that is not a header, more than MAX_HEADER_BYTES without an empty line) is
  dropped: the decoder resynchronises on the next `Content-Length` it sees;
- a declared length over MAX_MESSAGE_BYTES is refused without reading that many bytes:
  the decoder resynchronises on the next `Content-Length` too, discarding what comes
  before it as it arrives. It does not skip the declared number of bytes: a bogus
  length (50 GB) would then swallow every later message, and a real oversized body
  cannot hide a header from the scan, since a JSON text holds no raw line break in a
  string and no unquoted key;
- a body that is not JSON is read again from its first byte as if it were stream
  bytes: a length that was too long swallowed the start of the next message, which
  the resynchronisation finds.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

MAX_MESSAGE_BYTES = 64 << 20  # 64 MiB: a body longer than this is refused (a didOpen of a 60 MiB file still fits)
MAX_HEADER_BYTES = 8 << 10  # a header block is two short lines; 8 KiB of them without an empty line is garbage

_MARKER = re.compile(rb"content-length", re.IGNORECASE)
_MARKER_BYTES = len(b"content-length")
_HEADER_NAME = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP token
_MAX_LENGTH_DIGITS = 12  # more digits are over any limit; int() of thousands of digits is slow and may raise
_SKIPPING = "skipping to the next Content-Length header"


@dataclass(frozen=True)
class Problem:
    """Something in the stream that was not a message, and what the decoder did about it."""

    reason: str


class FrameDecoder:
    def __init__(self, max_message_bytes: int = MAX_MESSAGE_BYTES):
        self.max_message_bytes = max_message_bytes
        self._buffer = bytearray()
        self._length: int | None = None  # the body's length, once its header block is read
        self._resync_from: int | None = None  # while resynchronising: where the next marker may start

    def feed(self, data: bytes) -> list[Any]:
        """The messages (parsed JSON values) and `Problem`s that `data` completes, in stream order."""
        self._buffer += data
        out: list[Any] = []
        while True:
            if self._resync_from is not None and not self._resynchronise():
                return out
            if self._length is None:
                header = self._read_header_block()
                if header is None:
                    return out
                if isinstance(header, Problem):
                    out.append(header)
                    self._resync_from = 1  # past the first byte of the block that failed
                    continue
                self._length = header
            if len(self._buffer) < self._length:
                return out
            body = bytes(self._buffer[: self._length])
            del self._buffer[: self._length]
            self._length = None
            out.append(self._parse(body))

    def _parse(self, body: bytes) -> Any:
        try:
            return json.loads(body)
        except (ValueError, RecursionError) as error:  # UnicodeDecodeError is a ValueError
            if not body:
                return Problem("a message with Content-Length 0: nothing to read")
            self._buffer[:0] = body
            self._resync_from = 0
            return Problem(f"a body of {len(body)} bytes is not JSON ({_short(error)}); "
                           "looking for a Content-Length header in it and after it")

    def _resynchronise(self) -> bool:
        """Drop bytes up to the next marker; False while none has arrived (only a marker's tail is kept)."""
        found = _MARKER.search(self._buffer, self._resync_from)
        if found is None:
            del self._buffer[: max(self._resync_from, len(self._buffer) - (_MARKER_BYTES - 1))]
            self._resync_from = 0
            return False
        del self._buffer[: found.start()]
        self._resync_from = None
        return True

    def _read_header_block(self) -> int | Problem | None:
        """The declared body length, consuming the header block; a Problem (nothing consumed); None: more bytes needed."""
        length, start, headers = None, 0, 0
        while True:
            end = self._buffer.find(b"\n", start, MAX_HEADER_BYTES + 1)
            if end < 0:
                if len(self._buffer) > MAX_HEADER_BYTES:
                    return Problem(f"no end of headers within {MAX_HEADER_BYTES} bytes; {_SKIPPING}")
                return None
            line = bytes(self._buffer[start:end]).rstrip(b"\r")
            start = end + 1
            if not line and not headers:
                del self._buffer[:start]  # a blank line between messages: harmless
                start = 0
                continue
            if not line:
                break
            headers += 1
            name, colon, value = line.partition(b":")
            if b"\r" in line:  # a bare CR: two lines run together, the second maybe the next message's header
                return Problem(f"a carriage return inside a header line: {_show(line)}; {_SKIPPING}")
            if not colon or not _HEADER_NAME.fullmatch(name.strip()):
                return Problem(f"not a header line: {_show(line)}; {_SKIPPING}")
            if name.strip().lower() != b"content-length":
                continue
            declared = self._declared_length(value.strip())
            if isinstance(declared, Problem):
                return declared
            if length is not None and declared != length:
                return Problem(f"two Content-Length headers disagree ({length}, {declared}); {_SKIPPING}")
            length = declared
        if length is None:
            return Problem(f"a header block without Content-Length; {_SKIPPING}")
        del self._buffer[:start]
        return length

    def _declared_length(self, digits: bytes) -> int | Problem:
        if not digits.isdigit():
            return Problem(f"Content-Length is not a number: {_show(digits)}; {_SKIPPING}")
        if len(digits) > _MAX_LENGTH_DIGITS or int(digits) > self.max_message_bytes:
            shown = digits.decode() if len(digits) <= _MAX_LENGTH_DIGITS else f"{digits[:_MAX_LENGTH_DIGITS].decode()}… ({len(digits)} digits)"
            return Problem(f"a message of {shown} bytes is over the limit of {self.max_message_bytes} bytes: refused unread, {_SKIPPING}")
        return int(digits)


def _show(raw: bytes, limit: int = 40) -> str:
    text = repr(raw[:limit])[1:]
    return text if len(raw) <= limit else f"{text}…"


def _short(error: BaseException, limit: int = 80) -> str:
    text = str(error)
    return text if len(text) <= limit else f"{text[: limit - 1]}…"
