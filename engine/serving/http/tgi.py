"""TGI's API (text-generation-inference): POST /generate, /generate_stream and /.

`/` is TGI's compatibility route, which huggingface_hub's InferenceClient calls: a body
with `"stream": true` is answered as /generate_stream, otherwise as /generate wrapped in
a one-element list.

Each streamed event is one generated token. The last event also carries
`generated_text` (and `details` when asked); when the model ended on its end-of-sequence
token, which the engine never emits as text, the last event carries that token
(`special: true`), as TGI's does.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any, AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from .bridge import (
    SSE_HEADERS,
    ApiContext,
    EventStream,
    Finished,
    Generation,
    Piece,
    encode_text,
    finished,
    first_item,
    sse,
)
from .errors import error_body, message_of, status_of
from .schemas import (
    TGICompatRequest,
    TGIError,
    TGIGenerateResponse,
    TGIParameters,
    TGIRequest,
    TGIStreamEvent,
    sse_content,
)
from ...sampling import FinishReason, SamplingParams


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {s: {"model": TGIError, "description": "a JSON error"} for s in statuses}


ERRORS = _errors(400, 401, 413, 422, 500, 503)
# A route whose response class is EventStream would document its errors as event streams too.
STREAM_ERRORS = {status: {"description": "a JSON error",
                          "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TGIError"}}}}
                 for status in ERRORS}
STREAM_200 = {"description": "server-sent events: `data: <TGIStreamEvent JSON>` per generated token",
              "content": sse_content(TGIStreamEvent, TGIError)}


def tgi_sampling(p: TGIParameters) -> SamplingParams:
    """do_sample false is greedy whatever else is set; sampling without a seed draws one, reported back."""
    if not p.do_sample:
        return SamplingParams(max_new_tokens=p.max_new_tokens, stop=tuple(p.stop))
    return SamplingParams(
        max_new_tokens=p.max_new_tokens,
        temperature=1.0 if p.temperature is None else p.temperature,
        top_k=p.top_k or 0,
        top_p=1.0 if p.top_p is None else p.top_p,
        seed=p.seed if p.seed is not None else secrets.randbits(63),
        stop=tuple(p.stop),
    )


def _prompt_ids(ctx: ApiContext, body: TGIRequest) -> list[int]:
    ids = encode_text(ctx.engine, body.inputs, add_special_tokens=True)
    truncate = body.parameters.truncate
    return ids[-truncate:] if truncate and len(ids) > truncate else ids


@dataclass
class _Run:
    ctx: ApiContext
    body: TGIRequest
    params: SamplingParams
    generation: Generation
    path: str

    def token(self, piece: Piece, *, special: bool | None = None) -> dict[str, Any]:
        tokenizer = self.ctx.engine.tokenizer
        if special is None:
            special = piece.token_id in tokenizer.special_ids
        return {"id": piece.token_id, "text": piece.text, "logprob": None, "special": special}

    def last_token(self, end: Finished) -> dict[str, Any]:
        if end.last is not None:
            return self.token(end.last)
        eos = self.ctx.engine.tokenizer.eos_ids
        return self.token(Piece(eos[0] if eos else -1, end.tail), special=True)

    def finish_reason(self, end: Finished) -> str:
        result = end.result
        if result.finish_reason is FinishReason.LENGTH:
            return "length"
        if self.params.stop:
            tokenizer = self.ctx.engine.tokenizer
            # Ids past the tokenizer's vocab (a padded embedding) have no text.
            text = tokenizer.decode([t for t in result.token_ids if t < tokenizer.vocab_size])
            if any(s in text for s in self.params.stop):
                return "stop_sequence"
        return "eos_token"

    def generated_text(self, end: Finished) -> str:
        text = end.result.text
        return self.body.inputs + text if self.body.parameters.return_full_text else text

    def stream_details(self, end: Finished) -> dict[str, Any]:
        return {"finish_reason": self.finish_reason(end), "generated_tokens": end.result.usage.generated_tokens,
                "seed": self.params.seed}

    def response(self, pieces: list[Piece], end: Finished) -> dict[str, Any]:
        body: dict[str, Any] = {"generated_text": self.generated_text(end)}
        if self.body.parameters.details:
            tokens = [self.token(p) for p in pieces + ([end.last] if end.last is not None else [])]
            body["details"] = {**self.stream_details(end), "prefill": [], "tokens": tokens}
        return body

    async def events(self, item: Piece | Finished) -> AsyncIterator[str]:
        index = 1
        try:
            while isinstance(item, Piece):
                yield sse({"index": index, "token": self.token(item), "generated_text": None, "details": None})
                index += 1
                item = await self.generation.next()
            if item.error is not None:
                yield sse(error_body(self.path, status_of(item.error), message_of(item.error)))
                return
            details = self.stream_details(item) if self.body.parameters.details else None
            yield sse({"index": index, "token": self.last_token(item), "generated_text": self.generated_text(item),
                       "details": details})
        finally:
            self.generation.cancel()  # the client went away mid-stream; a no-op once finished


async def _start(ctx: ApiContext, request: Request, endpoint: str, body: TGIRequest) -> _Run:
    params = tgi_sampling(body.parameters)
    ids = await ctx.run(_prompt_ids, ctx, body)
    generation = Generation(ctx, endpoint, ids, params).start()
    return _Run(ctx, body, params, generation, request.url.path)


def tgi_router(ctx: ApiContext) -> APIRouter:
    router = APIRouter(tags=["TGI"])

    async def generate_body(request: Request, body: TGIRequest, endpoint: str) -> dict[str, Any]:
        run = await _start(ctx, request, endpoint, body)
        pieces, end = await finished(request, run.generation)
        return run.response(pieces, end)

    async def stream(request: Request, body: TGIRequest, endpoint: str) -> EventStream:
        run = await _start(ctx, request, endpoint, body)
        first = await first_item(request, run.generation)
        return EventStream(run.events(first), headers=SSE_HEADERS)

    @router.post("/generate", response_model=TGIGenerateResponse, responses=ERRORS)
    async def generate(request: Request, body: TGIRequest) -> JSONResponse:
        """Generate text for `inputs` (TGI's /generate)."""
        return JSONResponse(await generate_body(request, body, "generate"))

    @router.post("/generate_stream", response_class=EventStream, responses={200: STREAM_200, **STREAM_ERRORS})
    async def generate_stream(request: Request, body: TGIRequest) -> EventStream:
        """Generate text for `inputs`, streamed as server-sent events (TGI's /generate_stream)."""
        return await stream(request, body, "generate_stream")

    @router.post("/", response_model=list[TGIGenerateResponse],
                 responses={200: {"content": STREAM_200["content"]}, **ERRORS})
    async def compat_generate(request: Request, body: TGICompatRequest) -> JSONResponse | EventStream:
        """TGI's compatibility route: `stream` picks /generate_stream's answer, else a one-element list."""
        if body.stream:
            return await stream(request, body, "generate_stream")
        return JSONResponse([await generate_body(request, body, "generate")])

    return router
