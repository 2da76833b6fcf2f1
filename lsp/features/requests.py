"""Which request for a document is the latest one: supersession and $/cancelRequest.

Editor-neutral. Each completion (or pre-warm) for a document takes a `Ticket`; taking a
new one for the same document makes every older ticket report `cancelled()`, so the
engine stops decoding for a cursor the user has already typed past. A ticket is also
cancelled explicitly, when the client sends `$/cancelRequest`. Tickets are read from
engine worker threads and written from the event loop; a counter read and an Event are
enough, no lock is needed.
"""

from __future__ import annotations

import itertools
import threading


class Ticket:
    def __init__(self, tracker: "RequestTracker", key: str, number: int):
        self._tracker, self.key, self.number = tracker, key, number
        self._cancelled = threading.Event()

    def cancel(self) -> None:
        """The client cancelled this request ($/cancelRequest)."""
        self._cancelled.set()

    def superseded(self) -> bool:
        return self._tracker.latest(self.key) != self.number

    def cancelled(self) -> bool:
        """True once the request was cancelled or a newer one for the same document began."""
        return self._cancelled.is_set() or self.superseded()


class RequestTracker:
    """A per-document 'latest request' counter."""

    def __init__(self) -> None:
        self._numbers = itertools.count(1)
        self._latest: dict[str, int] = {}

    def begin(self, key: str, supersede: bool = True) -> Ticket:
        """A ticket for a new request on `key`.

        supersede=False is for background work (pre-warming): it cancels nothing, and
        is itself cancelled by the next request that does supersede.
        """
        if not supersede and key in self._latest:
            return Ticket(self, key, self._latest[key])
        number = next(self._numbers)
        self._latest[key] = number
        return Ticket(self, key, number)

    def keys(self) -> list[str]:
        return list(self._latest)

    def latest(self, key: str) -> int | None:
        return self._latest.get(key)

    def forget(self, key: str) -> None:
        """The document closed: whatever still runs for it is stale."""
        self._latest.pop(key, None)
