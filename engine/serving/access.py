"""Who may connect to a network listener: loopback addresses freely, anything else only with a token.

Shared by the engine's HTTP API (`loopcoder engine --http`, a bearer token), the language
server on TCP (`loopcoder lsp --tcp`, a token in initializationOptions) and the engine daemon
on loopback TCP (tcp_endpoint.py, a token in its endpoint file). Torch-free and FastAPI-free,
so `loopcoder lsp` imports it cheaply.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import socket
import stat
from pathlib import Path

from ..errors import InvalidRequestError

log = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    """Whether `host` names only loopback addresses ("localhost", 127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]").split("%")[0]).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback for info in infos)


def check_bind(host: str, token: str | None, *, service: str = "HTTP", option: str = "--http-token-file") -> None:
    """Refuse to serve `service` on a non-loopback address without a token (`option` gives one)."""
    if not token and not is_loopback(host):
        where = host or "every interface"
        raise InvalidRequestError(
            f"refusing to serve {service} on {where}, which is not a loopback address, without a token: "
            f"pass {option} FILE, or bind to 127.0.0.1")


def parse_address(text: str, option: str = "--http") -> tuple[str, int]:
    """HOST:PORT, [IPv6]:PORT or a bare PORT (on 127.0.0.1) as (host, port); errors name `option`."""
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = "127.0.0.1", text
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise InvalidRequestError(f"{option} {text!r}: write an IPv6 address in brackets, as [::1]:8080")
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise InvalidRequestError(f"{option} {text!r}: the port must be a number in [1, 65535]")
    return host or "127.0.0.1", int(port_text)


def read_token_file(path: str | Path, service: str = "HTTP") -> str:
    """The token in `path` (surrounding whitespace dropped); warns when others may read it."""
    path = Path(path)
    try:
        token = path.read_text(encoding="utf-8").strip()
        info = path.stat()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidRequestError(f"cannot read the {service} token file {path}: {exc}") from None
    problem = not_private(info)
    if problem:
        log.warning("the %s token file %s %s; chmod 600 it", service, path, problem)
    check_token(token, f"the {service} token file {path}")
    return token


def not_private(info: os.stat_result) -> str:
    """Why a file holding a secret is not this user's alone ("" when it is): another owner, or
    rights for the group or others. On Windows the mode bits say nothing of who may read (the
    file's ACL does; the user's own folders are private to them), so nothing is checked there."""
    if not hasattr(os, "getuid"):
        return ""
    if info.st_uid != os.getuid():
        return f"belongs to another user (uid {info.st_uid})"
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        return f"is readable by other users (mode {stat.S_IMODE(info.st_mode):04o})"
    return ""


def check_token(token: str, where: str) -> None:
    """Refuse an empty token, or one that is not printable ASCII without spaces."""
    if not token:
        raise InvalidRequestError(f"{where} holds an empty token")
    if not token.isascii() or not token.isprintable() or any(c.isspace() for c in token):
        raise InvalidRequestError(f"{where}: the token must be printable ASCII without spaces")


def token_matches(given: object, token: str) -> bool:
    """Whether `given` (whatever the client sent) is `token`, compared in constant time."""
    return isinstance(given, str) and given.isascii() and hmac.compare_digest(given.encode("ascii"), token.encode("ascii"))
