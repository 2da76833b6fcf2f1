"""Handing freed heap memory back to the system after large requests.

glibc's malloc keeps the pages a large request freed (a 16 MiB body, its JSON, the
prompt's tokens) in its arenas for the next allocation, so a server's RSS stays at its
peak after a burst. `malloc_trim(0)` returns every free page it can. Elsewhere (musl,
macOS) `trim_memory` does nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging

log = logging.getLogger(__name__)

TRIM_DELAY_S = 0.5  # after the last large request of a burst


def _malloc_trim():
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim  # a CDLL call releases the GIL while it runs
    except (OSError, AttributeError):  # no libc by that name, or not glibc
        return None


_MALLOC_TRIM = _malloc_trim()


def trim_memory() -> bool:
    """Return the heap's free pages to the system; False where the C library cannot (not glibc)."""
    if _MALLOC_TRIM is None:
        return False
    _MALLOC_TRIM(0)
    return True


class TrimAfterBursts:
    """One `trim_memory` on a worker thread TRIM_DELAY_S after the last large request of a
    burst ends (each one moves the trim back), so a burst costs one trim, not one per request.
    Call `large_request_done` on the event loop."""

    def __init__(self, delay_s: float = TRIM_DELAY_S) -> None:
        self.delay_s = delay_s
        self._timer: asyncio.TimerHandle | None = None
        self.trims = 0

    def large_request_done(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(self.delay_s, self._trim)

    def _trim(self) -> None:
        self._timer = None
        self.trims += 1
        asyncio.get_running_loop().run_in_executor(None, trim_memory).add_done_callback(self._report)

    @staticmethod
    def _report(done: asyncio.Future) -> None:
        if not done.cancelled() and done.exception() is not None:
            log.warning("trimming the heap failed: %s", done.exception())
