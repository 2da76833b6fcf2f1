"""Supersession and cancellation tickets, and the suggestion honouring them."""

import pytest

from loopcoder.lsp.features.inline_completion import suggest
from loopcoder.lsp.features.requests import RequestTracker
from loopcoder.lsp.features.settings import ServerSettings


def test_a_newer_request_cancels_only_the_same_document():
    tracker = RequestTracker()
    old, other = tracker.begin("a"), tracker.begin("b")
    assert not old.cancelled()
    new = tracker.begin("a")
    assert old.cancelled() and not new.cancelled() and not other.cancelled()
    new.cancel()  # $/cancelRequest
    assert new.cancelled()


def test_background_work_cancels_nothing_and_yields_to_the_next_request():
    tracker = RequestTracker()
    running = tracker.begin("a")
    warm = tracker.begin("a", supersede=False)
    assert not running.cancelled() and not warm.cancelled()
    tracker.begin("a")
    assert running.cancelled() and warm.cancelled()
    tracker.forget("a")  # didClose: everything still running for it is stale
    assert tracker.latest("a") is None


@pytest.mark.slow
def test_a_cancelled_suggestion_is_none(default_engine):
    text = "def add(a, b):\n    return "
    settings = ServerSettings(max_tokens=8)
    assert suggest(default_engine, "file:///s.py", text, len(text), settings, multiline=False, cancelled=lambda: True) is None
    got = suggest(default_engine, "file:///s.py", text, len(text), settings, multiline=False, cancelled=lambda: False)
    assert got is not None and "a" in got
