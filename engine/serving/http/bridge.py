"""One engine request behind the HTTP API: it runs on a worker thread, its tokens cross to the event loop.

Engine calls block (the calling thread drives the scheduler), so each request runs on a
worker of the API's own thread pool, under an anonymous document key closed afterwards
(its blocks stay in the content-hashed prefix cache, so a repeated prompt prefix is
reused). `on_token` is called on whichever thread runs the engine step; it hands each
token to the event loop with `call_soon_threadsafe` into an `asyncio.Queue`.

The last token is held back until the engine's next step begins (the scheduler polls
`cancelled` then), so that text the engine releases when it finishes (a held partial
stop string, an incomplete character) joins that last token, and the last streamed
event can carry it together with the finish. The hold lasts microseconds, not a token:
a request that finishes does so in the step that produced its last token.

    worker thread                           event loop
    generate_for ── on_token(id, text) ──▶ Queue ──▶ Piece, Piece, ..., Finished
                 ── cancelled() ◀───────── client gone / shutdown: cancel()
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

from starlette.requests import Request
from starlette.responses import StreamingResponse

from ...api import EngineAPI, GenerationResult, Priority
from ...errors import CancelledError, InternalError, InvalidRequestError, TokenizerError
from .limits import check_prompt_chars
from .metrics import HttpMetrics
from ...sampling import FinishReason, SamplingParams

log = logging.getLogger(__name__)

MAX_WORKERS = 64  # HTTP requests in flight at once; more wait for a worker
CLIENT = "http"  # the scheduler's fairness groups every HTTP request under one client

_keys = itertools.count(1)


@dataclass(frozen=True)
class Piece:
    """One generated token and the text it made safe to show (may be empty)."""

    token_id: int
    text: str


@dataclass(frozen=True)
class Finished:
    """The end of a request: its result or its error, and the last token, held back until now."""

    result: GenerationResult | None
    error: Exception | None
    last: Piece | None  # None when the model ended on an end-of-sequence token (never emitted)
    tail: str = ""  # text released at the end with no token to carry it (the eos case)


@dataclass
class ApiContext:
    """What every endpoint needs: the engine, the model's public name, metrics, workers."""

    engine: EngineAPI
    model_name: str
    metrics: HttpMetrics
    workers: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(MAX_WORKERS, thread_name_prefix="loopcoder-http"))
    created: int = field(default_factory=lambda: int(time.time()))
    live: set["Generation"] = field(default_factory=set)

    async def run(self, fn, *args):
        """`fn(*args)` on a worker thread."""
        return await asyncio.get_running_loop().run_in_executor(self.workers, fn, *args)

    def shutdown(self) -> None:
        for generation in list(self.live):
            generation.cancel()
        self.workers.shutdown(wait=False, cancel_futures=True)


class Generation:
    """One `generate_for` call on a worker thread, consumed as `Piece`s and a `Finished`."""

    def __init__(self, ctx: ApiContext, endpoint: str, prompt_ids: list[int], params: SamplingParams,
                 healed_text: str = "") -> None:
        self.ctx = ctx
        self.endpoint = endpoint
        self.prompt_ids = prompt_ids
        self.params = params
        self.healed_text = healed_text
        self._cancel = threading.Event()
        self._lock = threading.Lock()  # on_token and cancelled may come from different threads
        self._held: Piece | None = None
        self._tail = ""
        self._last_token_at: float | None = None
        self._queue: asyncio.Queue[Piece | Finished] = asyncio.Queue()
        self._loop = asyncio.get_running_loop()
        self._future = None

    def start(self) -> "Generation":
        self.ctx.live.add(self)
        self._future = self._loop.run_in_executor(self.ctx.workers, self._run)
        self._future.add_done_callback(lambda _: self.ctx.live.discard(self))
        return self

    def cancel(self) -> None:
        """Stop the generation at the engine's next step (the client went away)."""
        self._cancel.set()

    async def next(self) -> Piece | Finished:
        return await self._queue.get()

    async def finish(self) -> tuple[list[Piece], Finished]:
        """Every piece, then the end (non-streaming answers)."""
        pieces = []
        while isinstance(item := await self.next(), Piece):
            pieces.append(item)
        return pieces, item

    # -- the worker thread ---------------------------------------------------------------

    def _run(self) -> None:
        result, error = None, InternalError("the generation ended without a result")
        try:
            result, error = self._generate(), None
        except Exception as exc:  # handed to the event loop, which answers it (or logs it)
            error = exc
        finally:  # whatever happened, the waiting handler gets its end
            self._finish(result, error)

    def _generate(self) -> GenerationResult:
        engine = self.ctx.engine
        key = f"http/{next(_keys)}"
        try:
            return engine.generate_for(key, self.prompt_ids, self.params, self._on_token, self._cancelled,
                                       healed_text=self.healed_text, priority=Priority.INTERACTIVE, client=CLIENT)
        finally:
            try:
                engine.close(key)  # its blocks stay in the prefix cache
            except Exception:
                log.exception("closing HTTP request document %s failed", key)

    def _finish(self, result: GenerationResult | None, error: Exception | None) -> None:
        self._observe(result, error)
        if result is not None and result.finish_reason is FinishReason.CANCELLED:
            why = "the client went away" if self._cancel.is_set() else "by the engine (is it shutting down?)"
            result, error = None, CancelledError(f"the generation was cancelled: {why}")
        with self._lock:
            last, self._held, tail = self._held, None, self._tail
        self._push(Finished(result, error, last, tail))

    def _on_token(self, token_id: int, text: str) -> None:
        with self._lock:
            if token_id < 0:  # text released as the request ends
                if self._held is not None:
                    self._held = Piece(self._held.token_id, self._held.text + text)
                else:
                    self._tail += text
                return
            self._release()
            self._held = Piece(token_id, text)
            now = time.perf_counter()
            before, self._last_token_at = self._last_token_at, now
        if before is not None:
            self.ctx.metrics.observe_token_gap(now - before)

    def _cancelled(self) -> bool:
        # Polled at the start of each engine step: the previous step's token is final by now.
        with self._lock:
            self._release()
        return self._cancel.is_set()

    def _release(self) -> None:
        if self._held is not None:
            self._push(self._held)
            self._held = None

    def _push(self, item: Piece | Finished) -> None:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:  # the event loop is closed: nobody is listening any more
            self._cancel.set()

    def _observe(self, result: GenerationResult | None, error: Exception | None) -> None:
        try:
            if result is not None:
                self.ctx.metrics.observe_result(self.endpoint, result)
            else:
                self.ctx.metrics.observe_error(self.endpoint)
        except Exception:
            log.exception("recording HTTP metrics failed")


# -- what every generating endpoint does ---------------------------------------------------

def encode_text(engine: EngineAPI, text: str, *, add_special_tokens: bool) -> list[int]:
    """The client's prompt text as token ids; text the tokenizer refuses, or too long to fit the
    model's context (checked first, by its characters), is the client's error. Call it on a
    worker thread: a long text's tokenizing takes a while (without the GIL)."""
    tokenizer = engine.tokenizer
    if tokenizer is None:
        raise TokenizerError("the served model has no tokenizer: text prompts cannot be encoded")
    check_prompt_chars(engine, len(text))
    try:
        return tokenizer.encode(text, add_special_tokens=add_special_tokens)
    except TokenizerError as exc:
        raise InvalidRequestError(f"the prompt cannot be tokenized: {exc}") from exc


def sse(payload: dict[str, Any] | str) -> str:
    """One server-sent event: `data: <json>` and a blank line."""
    data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    return f"data: {data}\n\n"


SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class EventStream(StreamingResponse):
    media_type = "text/event-stream"


async def _until_disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


@contextlib.asynccontextmanager
async def cancel_on_disconnect(request: Request, generation: Generation) -> AsyncIterator[None]:
    """While inside, a client that goes away (or a handler cancelled at shutdown) cancels `generation`.

    Only for the time before a response starts: a streaming response notices the client
    leaving itself, and its body's `finally` cancels the generation.
    """
    def on_done(task: asyncio.Task) -> None:
        if not task.cancelled():
            task.exception()  # retrieved, so asyncio does not report it as never retrieved
            generation.cancel()

    watcher = asyncio.ensure_future(_until_disconnected(request))
    watcher.add_done_callback(on_done)
    try:
        yield
    except BaseException:
        generation.cancel()
        raise
    finally:
        watcher.cancel()


async def first_item(request: Request, generation: Generation) -> Piece | Finished:
    """The first token or the end; an engine error raises here, before any response is started,
    so a refused streaming request still gets its HTTP status."""
    async with cancel_on_disconnect(request, generation):
        item = await generation.next()
    if isinstance(item, Finished) and item.error is not None:
        raise item.error
    return item


async def finished(request: Request, generation: Generation) -> tuple[list[Piece], Finished]:
    """Every piece and the end, for a non-streaming answer; an engine error raises."""
    async with cancel_on_disconnect(request, generation):
        pieces, end = await generation.finish()
    if end.error is not None:
        raise end.error
    return pieces, end
