"""`loopcoder lsp`: the language server, on stdio or TCP. Its options are defaults that the
client's initializationOptions override.

On TCP it refuses an address off loopback unless given a token (`--tcp-token-file`), which
every client must then send as initializationOptions.token (lsp/server/protocol.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from loopcoder.engine.errors import InvalidRequestError
from loopcoder.engine.serving.access import check_bind, parse_address, read_token_file
from loopcoder.lsp.features.settings import ServerSettings
from loopcoder.lsp.server import build_server
from loopcoder.lsp.server.framing import MAX_MESSAGE_BYTES

from .common import add_model_args
from .loading import set_threads


EPILOG = ("On TCP, a client on another machine is a stranger: an address off loopback needs --tcp-token-file, "
          "and a client whose initialize lacks the token (initializationOptions.token) gets an error for it and "
          f"for every later request. Messages over {MAX_MESSAGE_BYTES >> 20} MiB are refused, and requests whose "
          "params do not fit the LSP types are answered with InvalidParams (-32602) naming the field "
          "(docs/troubleshooting.md).")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = EPILOG
    add_model_args(p)
    p.add_argument("--max-tokens", type=int, default=64, help="tokens to generate per suggestion (default: 64)")
    p.add_argument("--temperature", type=float, default=0.0, help="0 means greedy (default)")
    p.add_argument("--tcp", metavar="HOST:PORT",
                   help="listen on TCP instead of stdin/stdout, e.g. 127.0.0.1:2087; an address off loopback "
                        "(0.0.0.0, a LAN address) is refused without --tcp-token-file")
    p.add_argument("--tcp-token-file", type=Path, default=None, metavar="FILE",
                   help="a file holding a token (printable ASCII, no spaces; chmod 600) that every client must send "
                        "as initializationOptions.token in initialize; its other requests are refused until it does")
    p.add_argument("--no-prewarm", action="store_true", help="do not prefill documents on open and save")
    p.add_argument("--backend", default="local", choices=("local", "inprocess", "openai", "tgi"),
                   help="local: the shared engine daemon, started when none runs (default); "
                        "inprocess: load the model into this server; openai / tgi: a remote server at --url")
    p.add_argument("--socket", default=None, help="the engine daemon's unix socket (default: as for `loopcoder engine`)")
    p.add_argument("--url", default=None, help="the remote server's base URL for --backend openai / tgi")
    p.add_argument("--api-key", default=None, help="bearer token for the remote server (default: $LOOPCODER_API_KEY)")
    p.add_argument("--tokenizer", default=None, help="the remote model's tokenizer: its directory or .gguf")
    p.add_argument("--fim-template", default=None, metavar="TEMPLATE",
                   help="the fill-in-the-middle prompt for a model whose format is not detected, e.g. "
                        "'<PRE> {prefix} <SUF>{suffix} <MID>' (the client's fimTemplate setting overrides it)")


def run(args: argparse.Namespace) -> int:
    address, token = _tcp_address(args)
    set_threads(args.threads)
    settings = ServerSettings(model=args.model, device=args.device, dtype=args.dtype, quant=args.quant,
                              max_tokens=args.max_tokens, temperature=args.temperature, prewarm=not args.no_prewarm,
                              backend=args.backend, socket=args.socket, threads=args.threads or 0, url=args.url,
                              api_key=args.api_key, tokenizer=args.tokenizer, fim_template=args.fim_template)
    server = build_server(settings)
    if address is None:
        server.start_io()  # stdout is the protocol channel: logging goes to stderr only
        return 0
    if token is not None:
        server.protocol.require_token(token)
    server.start_tcp(*address)
    return 0


def _tcp_address(args: argparse.Namespace) -> tuple[tuple[str, int] | None, str | None]:
    """--tcp's (host, port) and --tcp-token-file's token; (None, None) for stdio."""
    if args.tcp is None:
        if args.tcp_token_file:
            raise InvalidRequestError("--tcp-token-file needs --tcp HOST:PORT")
        return None, None
    address = parse_address(args.tcp, "--tcp")
    token = read_token_file(args.tcp_token_file, "TCP") if args.tcp_token_file else None
    check_bind(address[0], token, service="the language server", option="--tcp-token-file")
    return address, token
