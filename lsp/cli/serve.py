"""`loopcoder lsp`: the language server, on stdio or TCP. Its options are defaults that the
client's initializationOptions override."""

from __future__ import annotations

import argparse

from loopcoder.engine.errors import InvalidRequestError
from loopcoder.lsp.features.settings import ServerSettings
from loopcoder.lsp.server import build_server

from .common import add_model_args
from .loading import set_threads


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_args(p)
    p.add_argument("--max-tokens", type=int, default=64, help="tokens to generate per suggestion (default: 64)")
    p.add_argument("--temperature", type=float, default=0.0, help="0 means greedy (default)")
    p.add_argument("--tcp", metavar="HOST:PORT", help="listen on TCP instead of stdin/stdout")
    p.add_argument("--no-prewarm", action="store_true", help="do not prefill documents on open and save")
    p.add_argument("--backend", default="local", choices=("local", "inprocess", "openai", "tgi"),
                   help="local: the shared engine daemon, started when none runs (default); "
                        "inprocess: load the model into this server; openai / tgi: a remote server at --url")
    p.add_argument("--socket", default=None, help="the engine daemon's unix socket (default: as for `loopcoder engine`)")
    p.add_argument("--url", default=None, help="the remote server's base URL for --backend openai / tgi")
    p.add_argument("--api-key", default=None, help="bearer token for the remote server (default: $LOOPCODER_API_KEY)")
    p.add_argument("--tokenizer", default=None, help="the remote model's tokenizer: its directory or .gguf")


def run(args: argparse.Namespace) -> int:
    set_threads(args.threads)
    settings = ServerSettings(model=args.model, device=args.device, dtype=args.dtype, quant=args.quant,
                              max_tokens=args.max_tokens, temperature=args.temperature, prewarm=not args.no_prewarm,
                              backend=args.backend, socket=args.socket, threads=args.threads or 0, url=args.url,
                              api_key=args.api_key, tokenizer=args.tokenizer)
    server = build_server(settings)
    if args.tcp is None:
        server.start_io()  # stdout is the protocol channel: logging goes to stderr only
        return 0
    host, _, port = args.tcp.rpartition(":")
    if not host or not port.isdigit():
        raise InvalidRequestError(f"--tcp wants HOST:PORT, e.g. 127.0.0.1:2087, not {args.tcp!r}")
    server.start_tcp(host, int(port))
    return 0
