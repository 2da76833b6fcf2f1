"""jupyter-server's pytest fixtures (pytest-jupyter), scoped to these tests.

pytest-jupyter runs the server on its own event loop (`jp_asyncio_loop`) and, loaded for
the whole suite, would take over the async tests pytest-asyncio runs elsewhere; so it is
imported here, and these tests are plain functions that drive `jp_fetch` on that loop
(`fetch`).
"""

import json

import pytest
from pytest_jupyter.jupyter_server import *

EXTENSION = "loopcoder.jupyter_ext"
CONTEXT_BUDGET = 1024  # small, so a huge notebook is cut and every prompt stays quick on a CPU


@pytest.fixture
def jp_server_config():
    return {
        "ServerApp": {"jpserver_extensions": {EXTENSION: True}},
        "LoopcoderExtension": {"backend": "inprocess", "preload": False, "context_budget": CONTEXT_BUDGET,
                               "action_tokens": 256},
    }


class Preloaded:
    """Stands for the extension's LazyEngine: the test run's one copy of the default model."""

    def __init__(self, engine):
        self.loaded = engine

    def start(self, settings) -> None:
        pass

    def get(self, settings):
        return self.loaded


@pytest.fixture
def extension(jp_serverapp):
    (app,) = jp_serverapp.extension_manager.extension_apps[EXTENSION]
    return app


@pytest.fixture
def with_model(extension, default_engine):
    extension.engine = Preloaded(default_engine)
    return extension


@pytest.fixture
def fetch(jp_fetch, jp_asyncio_loop):
    """fetch(route, body=None | dict | str, method="POST", **kwargs) -> (status, parsed JSON or text)."""

    def call(route: str, body=None, method: str = "POST", **kwargs):
        if body is not None and not isinstance(body, (str, bytes)):
            body = json.dumps(body)
        response = jp_asyncio_loop.run_until_complete(jp_fetch(
            "loopcoder", route, method=method, body=body, raise_error=False, request_timeout=300, **kwargs))
        text = response.body.decode()
        try:
            return response.code, json.loads(text)
        except json.JSONDecodeError:
            return response.code, text

    return call


def code(source: str, outputs=()) -> dict:
    return {"cell_type": "code", "source": source, "outputs": list(outputs)}


def markdown(source: str) -> dict:
    return {"cell_type": "markdown", "source": source}


def stream(text: str) -> dict:
    return {"output_type": "stream", "name": "stdout", "text": text}


def error(ename: str, evalue: str, traceback: list[str]) -> dict:
    return {"output_type": "error", "ename": ename, "evalue": evalue, "traceback": traceback}
