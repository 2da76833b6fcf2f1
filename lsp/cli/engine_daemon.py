"""`loopcoder engine` in the foreground: load the model (on one process, or as rank 0 of
--tensor-parallel ranks) and serve it on the unix socket (or loopback TCP with a token: socket_file.py),
and on --http when asked."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from loopcoder.engine.errors import EngineBusyError, InvalidRequestError
from loopcoder.engine.serving import daemon
from loopcoder.engine.serving.access import check_bind, parse_address, read_token_file
from loopcoder.engine.serving.socket_file import claim_socket, daemon_transport

from .loading import launch_tensor_parallel, load_engine, parse_size, socket_path


def run(args: argparse.Namespace) -> int:
    path = socket_path(args)
    http, token = _http_address(args)  # checked before the model loads: a bad address fails at once
    transport = daemon_transport()  # and a bad LOOPCODER_DAEMON_TRANSPORT
    if args.tensor_parallel < 1:
        raise InvalidRequestError(f"--tensor-parallel must be at least 1, not {args.tensor_parallel}")
    try:
        lock = claim_socket(path)  # noqa: F841  held until this process exits
    except EngineBusyError as e:
        print(f"loopcoder: error: {e}", file=sys.stderr)
        return EngineBusyError.exit_code
    ranks = None
    if args.tensor_parallel > 1:
        engine, ranks = launch_tensor_parallel(args)
    else:
        engine = load_engine(args)
    name = str(args.model) if args.model else "SmolLM2-135M-Instruct (embedded default)"
    where = (f"{path}" if transport == "unix" else f"loopback TCP (endpoint file {path})") + (
        f" and http://{args.http}" if http else "")
    split = f" over {args.tensor_parallel} ranks" if ranks is not None else ""
    print(f"loopcoder engine: {name} on {args.device}{split}, listening on {where}", file=sys.stderr, flush=True)
    daemon.run(engine, path, model_name=name, model_path=str(Path(args.model).resolve()) if args.model else "",
               idle_timeout_s=args.idle_timeout or None, http=http, http_token=token,
               http_max_body=parse_size(args.http_max_body), ranks=ranks, transport=transport)
    if ranks is not None and ranks.plan.backend == "nccl":
        # The followers have left; NCCL's communicators block the interpreter's teardown
        # (seen on 2 H200s, torch 2.11), so this rank exits as the followers do.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0


def _http_address(args: argparse.Namespace) -> tuple[tuple[str, int] | None, str | None]:
    """--http's (host, port) and --http-token-file's token; (None, None) without --http."""
    if not args.http:
        for option, value in (("--http-token-file", args.http_token_file), ("--http-max-body", args.http_max_body)):
            if value:
                raise InvalidRequestError(f"{option} needs --http HOST:PORT")
        return None, None
    address = parse_address(args.http)
    token = read_token_file(args.http_token_file) if args.http_token_file else None
    check_bind(address[0], token)
    parse_size(args.http_max_body)  # a bad size fails before the model loads
    return address, token
