"""`loopcoder engine`: the engine daemon. Its actions: start (detached) and stop
(engine_control.py), status (status.py); none runs it in the foreground (engine_daemon.py).

This module holds the options alone: each action's module is imported when it runs, so that
parsing them (the GPU server's `loopcoder engine`, and --help) loads neither the model runtime
nor the client's tokenizer."""

from __future__ import annotations

import argparse
from importlib import import_module
from pathlib import Path

from .common import add_model_args

# The module that runs each action (None: the daemon in the foreground).
ACTIONS: dict[str | None, str] = {"start": "engine_control", "stop": "engine_control", "status": "status", None: "engine_daemon"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", nargs="?", choices=("start", "stop", "status"),
                   help="start: detached, in the background; stop; status: a table. None: run in the foreground")
    add_model_args(p)
    p.add_argument("--socket", type=Path, default=None,
                   help="unix socket path, or on loopback TCP (Windows, or LOOPCODER_DAEMON_TRANSPORT=tcp) the "
                        "endpoint file naming the port and token (default: $XDG_RUNTIME_DIR/loopcoder/engine.sock, "
                        "/tmp/loopcoder-UID/engine.sock, on Windows %%LOCALAPPDATA%%\\loopcoder\\engine.sock; "
                        "env LOOPCODER_SOCKET)")
    p.add_argument("--idle-timeout", type=float, default=0.0,
                   help="exit after this many seconds without a client (default: 0, never)")
    p.add_argument("--kv-budget", type=str, default=None, help="KV cache size, e.g. 2GiB (default: the engine's)")
    p.add_argument("--http", metavar="HOST:PORT", default=None,
                   help="also serve the HTTP API (TGI and OpenAI shapes, docs/api.md), e.g. 127.0.0.1:8080; "
                        "an address off loopback needs --http-token-file")
    p.add_argument("--http-token-file", type=Path, default=None,
                   help="a file holding the bearer token every HTTP request but /health must carry")
    p.add_argument("--http-max-body", metavar="SIZE", default=None,
                   help="refuse HTTP request bodies larger than this (413), e.g. 4MiB (default: 16MiB)")
    p.add_argument("--tensor-parallel", type=int, default=1, metavar="N",
                   help="split the model over N processes, one per GPU (rank r on cuda:r; on cpu, N processes "
                        "over gloo); the daemon is rank 0 and starts the others (default: 1)")


def run(args: argparse.Namespace) -> int:
    return import_module(f"{__package__}.{ACTIONS[args.action]}").run(args)
