"""The extension on its default backend, `local`: the shared engine daemon, started by the
first request's connection (as for the language servers), holding the notebook's warm
session. One real daemon on a private socket, stopped at the end."""

import pytest
from loopcoder.engine.serving.client import DaemonClient

from .conftest import CONTEXT_BUDGET, code, markdown

EXTENSION = "loopcoder.jupyter_ext"
CELLS = [markdown("# Squares"), code("def square(x):\n    return x * x\n\nvalues = [1, 2, 3]"), code("total = sum(")]


@pytest.fixture
def socket_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("daemon") / "engine.sock"
    yield path
    try:
        DaemonClient(path, client_name="test teardown").shutdown()
    except Exception:  # never started, or already gone
        pass


@pytest.fixture
def jp_server_config(socket_path):
    return {
        "ServerApp": {"jpserver_extensions": {EXTENSION: True}},
        "LoopcoderExtension": {"backend": "local", "socket": str(socket_path), "preload": False,
                               "context_budget": CONTEXT_BUDGET, "max_tokens": 8},
    }


@pytest.mark.slow
def test_completions_go_through_the_shared_daemon(fetch, socket_path):
    body = {"path": "work/squares.ipynb", "cells": CELLS, "cell_index": 2, "offset": len(CELLS[2]["source"])}
    status, first = fetch("complete", body)
    assert status == 200, first
    assert isinstance(first["text"], str) and first["prompt_tokens"] > 20
    daemon = DaemonClient(socket_path, client_name="test observer")
    stats = daemon.stats()
    assert stats["sessions"] >= 1 and any(c.startswith("loopcoder") for c in stats["clients"]), stats
    # The next keystroke: the daemon's warm session for the notebook serves most of the prompt.
    typed = CELLS[:2] + [code("total = sum(v")]
    status, second = fetch("complete", {**body, "cells": typed, "offset": len(typed[2]["source"])})
    assert status == 200, second
    assert second["usage"]["prefill_tokens"] * 4 < first["usage"]["prefill_tokens"], (first, second)
    assert second["usage"]["cached_tokens"] > 0.75 * second["usage"]["prompt_tokens"]
    assert daemon.stats()["pid"] == stats["pid"]  # the same daemon served both
