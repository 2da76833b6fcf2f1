"""`loopcoder engine start` (a detached daemon, with the options given) and `loopcoder engine stop`."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from loopcoder.engine.errors import EngineUnavailableError
from loopcoder.engine.serving.client import AutoStart, DaemonClient

from .loading import socket_path


def run(args: argparse.Namespace) -> int:
    path = socket_path(args)
    return _stop(path) if args.action == "stop" else _start(args, path)


def _stop(path: Path) -> int:
    try:
        client = DaemonClient(path, client_name="loopcoder engine stop")
    except EngineUnavailableError:
        print(f"no engine is running on {path}")
        return 0
    pid = client.stats().get("pid")
    client.shutdown()
    deadline = time.monotonic() + 30
    while path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    print(f"engine stopped (pid {pid})")
    return 0


def _start(args: argparse.Namespace, path: Path) -> int:
    client = DaemonClient(path, client_name="loopcoder engine start",
                          autostart=AutoStart(_model_argv(args), idle_timeout_s=args.idle_timeout))
    stats = client.stats()
    print(f"engine running: pid {stats['pid']}, model {stats['model'] or '(default)'}, socket {path}")
    return 0


def _model_argv(args: argparse.Namespace) -> tuple[str, ...]:
    """The options `engine start` passes on to the detached daemon."""
    argv = ["--device", args.device, "--dtype", args.dtype, "--quant", args.quant]
    if args.model:
        argv += ["--model", str(Path(args.model).resolve())]
    if args.threads:
        argv += ["--threads", str(args.threads)]
    if args.kv_budget:
        argv += ["--kv-budget", args.kv_budget]
    if getattr(args, "http", None):
        argv += ["--http", args.http]
    if getattr(args, "http_token_file", None):
        argv += ["--http-token-file", str(Path(args.http_token_file).resolve())]
    if getattr(args, "http_max_body", None):
        argv += ["--http-max-body", args.http_max_body]
    if getattr(args, "tensor_parallel", 1) != 1:
        argv += ["--tensor-parallel", str(args.tensor_parallel)]
    return tuple(argv)
