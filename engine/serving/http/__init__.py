"""The engine's HTTP API: TGI- and OpenAI-compatible generation, health and Prometheus metrics.

Off by default: `loopcoder engine --http HOST:PORT [--http-token-file FILE]` serves it
beside the unix socket, in the daemon's event loop (`serve_http`). It binds to loopback
unless told otherwise and refuses any other address without a bearer token
(`check_bind`, in `engine/serving/access.py`); with a token, every endpoint but /health requires
`Authorization: Bearer <token>`.

| module | concept |
|---|---|
| `__init__.py` | the app: auth, error handlers, /health, /metrics, serving |
| `tgi.py`, `openai.py` | the two API families' endpoints |
| `bridge.py` | one engine request on a worker thread, streamed to the event loop |
| `schemas.py` | request and response bodies (they make /openapi.json) |
| `limits.py` | what a request may be: the body's bytes, the prompt's characters |
| `errors.py`, `metrics.py` | error bodies and statuses; the Prometheus registry |

docs/api.md is the user's guide, with every endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import socket
from typing import Any

import uvicorn
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from ...api import EngineAPI
from ...errors import LoopcoderError
from ...hardware import package_version
from ..access import check_bind, check_token
from .bridge import ApiContext
from .errors import error_response, exception_response
from .limits import MAX_BODY_BYTES, LimitBody
from .metrics import HttpMetrics
from .openai import openai_router
from .schemas import STREAM_MODELS, Health
from .tgi import tgi_router

log = logging.getLogger(__name__)

GRACEFUL_SHUTDOWN_S = 5.0  # then streams still open are cut and their generations cancelled
OPEN_PATHS = frozenset({"/health"})  # served without the token


# -- before a request reaches a route ---------------------------------------------------------


class _RequireToken:
    """Pure ASGI (so streaming and disconnects pass through untouched): the bearer token on
    every path but OPEN_PATHS, compared in constant time."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode("ascii")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in OPEN_PATHS and not self._authorized(Headers(scope=scope)):
            response = error_response(scope["path"], 401, "a bearer token is required: send 'Authorization: Bearer "
                                                          "<token>' with the token from the engine's --http-token-file",
                                      headers={"WWW-Authenticate": "Bearer"})
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _authorized(self, headers: Headers) -> bool:
        scheme, _, given = (headers.get("authorization") or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode("latin-1"), self.token)


_TYPE_NAMES = frozenset({"str", "int", "float", "bool", "list", "dict", "none"})


def _field_path(loc: tuple) -> str:
    """`messages[0].role` from pydantic's ("body", "messages", 0, "role"). The names of union
    members that pydantic puts in (`constrained-str`, `list[int]`) are left out: no field of
    ours is named like them."""
    parts: list[str] = []
    for item in loc[1:] if loc and loc[0] == "body" else loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif not ("[" in item or "-" in item or item in _TYPE_NAMES):
            parts.append(("." if parts else "") + item)
    return "".join(parts)


def _validation_message(errors: list[dict[str, Any]]) -> tuple[str, str | None]:
    """One readable line naming each bad field, and the first field (OpenAI's `param`)."""
    first = errors[0] if errors else {}
    if first.get("type") == "json_invalid":
        why = (first.get("ctx") or {}).get("error", "")
        return f"the request body is not valid JSON: {why} (at character {first['loc'][-1]})", None
    if tuple(first.get("loc", ())) == ("body",):
        if first.get("type") == "missing":
            return "the request body is missing: send a JSON object (Content-Type: application/json)", None
        return "the request body must be a JSON object, sent with Content-Type: application/json", None
    by_field: dict[str, list[str]] = {}  # a union's members each report; one line per field
    for err in errors:
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        messages = by_field.setdefault(_field_path(tuple(err.get("loc", ()))), [])
        if msg not in messages:
            messages.append(msg)
    lines = [f"{field}: {' / '.join(messages)}" for field, messages in list(by_field.items())[:6]]
    return "; ".join(lines), next(iter(by_field)) or None


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid_body(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = _validation_message(list(exc.errors()))
        return error_response(request.url.path, 422, message, param)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(request.url.path, exc.status_code, str(exc.detail), headers=exc.headers)

    @app.exception_handler(LoopcoderError)
    async def engine_error(request: Request, exc: LoopcoderError) -> JSONResponse:
        return exception_response(request.url.path, exc)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        return exception_response(request.url.path, exc)  # logged there, with the traceback


# -- the app ---------------------------------------------------------------------------------


def build_app(engine: EngineAPI, *, model_name: str, token: str | None,
              max_body_bytes: int = MAX_BODY_BYTES) -> FastAPI:
    """The HTTP API over `engine`; `token` (None: no auth) is required on every path but /health,
    and a body over `max_body_bytes` is refused (413) as it is read."""
    if token is not None:
        check_token(token, "the HTTP token")
    ctx = ApiContext(engine, model_name, HttpMetrics(engine))

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        ctx.shutdown()

    app = FastAPI(title="loopcoder", version=package_version(), lifespan=lifespan,
                  description="TGI- and OpenAI-compatible text generation by the loopcoder engine. See docs/api.md.")
    app.state.loopcoder = ctx
    app.state.loopcoder_token = token
    app.add_middleware(LimitBody, limit=max_body_bytes)
    if token is not None:
        app.add_middleware(_RequireToken, token=token)  # added last, so it runs first
    _install_error_handlers(app)
    # _RequireToken enforces the token; this dependency only declares it in the schema.
    deps = [Depends(HTTPBearer(auto_error=False))] if token else []
    app.include_router(tgi_router(ctx), dependencies=deps)
    app.include_router(openai_router(ctx), dependencies=deps)
    _add_health_and_metrics(app, ctx, deps)
    _document_stream_events(app)
    return app


def _document_stream_events(app: FastAPI) -> None:
    """Add the models that only event streams name (by $ref) to the schema's components."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in STREAM_MODELS:
                model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(model_schema.pop("$defs", {}))
                components.setdefault(model.__name__, model_schema)
        return app.openapi_schema

    app.openapi = openapi


def _add_health_and_metrics(app: FastAPI, ctx: ApiContext, deps: list) -> None:
    @app.get("/health", response_model=Health, responses={503: {"model": Health}}, tags=["Operations"])
    async def health() -> JSONResponse:
        """200 when the engine answers (no token needed), 503 with the reason otherwise."""
        try:
            stats = await asyncio.to_thread(ctx.engine.stats)
        except Exception as exc:
            log.warning("health check: the engine does not answer: %s", exc)
            body = Health(status="unavailable", model=ctx.model_name, error=str(exc))
            return JSONResponse(body.model_dump(), status_code=503)
        body = Health(status="ok", model=ctx.model_name, queue_depth=stats["queue_depth"], running=stats["running"],
                      warm_documents=stats["sessions"])
        return JSONResponse(body.model_dump())

    @app.get("/metrics", response_class=Response, tags=["Operations"], dependencies=deps,
             responses={200: {"description": "Prometheus text format",
                              "content": {"text/plain": {"schema": {"type": "string"}}}}})
    async def metrics() -> Response:
        """Prometheus metrics: latencies, queue, warm documents, KV cache, prefix-cache hits."""
        return Response(await asyncio.to_thread(ctx.metrics.render), media_type=CONTENT_TYPE_LATEST)


# -- serving ---------------------------------------------------------------------------------


class _EmbeddedServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self):
        # The daemon owns SIGTERM and SIGINT; it sets `stop`, which ends serve_http.
        yield


def _listen(host: str, port: int) -> socket.socket:
    try:
        family = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
        return socket.create_server((host, port), family=family)
    except (OSError, UnicodeError) as exc:
        raise LoopcoderError(f"cannot serve HTTP on {host}:{port}: {exc}") from None


async def serve_http(app: FastAPI, host: str, port: int, stop: asyncio.Event) -> None:
    """Serve `app` on host:port in the running event loop until `stop` is set.

    Raises LoopcoderError when the address cannot be bound, and InvalidRequestError for a
    non-loopback host when the app has no token. On stop, requests in flight get
    GRACEFUL_SHUTDOWN_S to finish; streams still open then are cut and their generations
    cancelled.
    """
    check_bind(host, getattr(app.state, "loopcoder_token", None))
    sock = _listen(host, port)
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on", ws="none",
                            proxy_headers=False, server_header=False,
                            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S)
    server = _EmbeddedServer(config)
    serving = asyncio.ensure_future(server.serve(sockets=[sock]))
    stopping = asyncio.ensure_future(stop.wait())
    log.info("HTTP API on http://%s:%d%s", f"[{host}]" if ":" in host else host, port,
             "" if getattr(app.state, "loopcoder_token", None) else " (no token)")
    try:
        await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        server.should_exit = True
        stopping.cancel()
        try:
            await serving
        except SystemExit:  # uvicorn exits on a failed startup; the daemon must not
            raise LoopcoderError("the HTTP server failed to start; see the log above") from None
        finally:
            sock.close()
