"""OpenAI's API: POST /v1/completions and /v1/chat/completions, GET /v1/models.

Streaming answers are server-sent events `data: <chunk JSON>`, the last one `data: [DONE]`.
A chat stream opens with a chunk holding the assistant role, then one chunk per piece of
text, then a chunk with `finish_reason`; `stream_options.include_usage` adds a chunk with
`usage` and no choices before [DONE]. Chat prompts are rendered with the model's chat
template.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ...api import GenerationResult
from ...errors import InvalidRequestError, TokenizerError
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
from .limits import check_prompt_chars
from .schemas import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Completion,
    CompletionRequest,
    ModelList,
    OpenAIError,
    OpenAISampling,
    sse_content,
)
from ...sampling import MAX_NEW_TOKENS_CAP, FinishReason, SamplingParams

ERRORS = {s: {"model": OpenAIError, "description": "a JSON error"} for s in (400, 401, 413, 422, 500, 503)}
_STREAM_DOC = "JSON, or with stream=true server-sent events `data: <chunk JSON>` ending with `data: [DONE]`"
COMPLETION_200 = {"description": _STREAM_DOC, "content": sse_content(Completion, OpenAIError, done=True)}
CHAT_200 = {"description": _STREAM_DOC, "content": sse_content(ChatCompletionChunk, OpenAIError, done=True)}
DEFAULT_COMPLETION_TOKENS = 16


def openai_sampling(body: OpenAISampling, max_tokens: int) -> SamplingParams:
    try:
        schema = body.response_format.schema() if body.response_format is not None else None
    except ValueError as exc:
        raise InvalidRequestError(str(exc)) from None
    return SamplingParams(max_new_tokens=max_tokens, temperature=body.temperature, top_k=body.top_k,
                           top_p=body.top_p, seed=body.seed, stop=tuple(body.stop_strings()),
                           ignore_eos=body.ignore_eos, json_schema=schema)


def _completion_prompt(ctx: ApiContext, body: CompletionRequest) -> list[int]:
    prompt = body.single_prompt()
    if isinstance(prompt, str):
        return encode_text(ctx.engine, prompt, add_special_tokens=True)
    return list(prompt)  # token ids: the engine checks their range and names a bad one


def _chat_prompt(ctx: ApiContext, body: ChatCompletionRequest) -> list[int]:
    tokenizer = ctx.engine.tokenizer
    if tokenizer is None:
        raise TokenizerError("the served model has no tokenizer: chat prompts cannot be rendered")
    # "developer" is OpenAI's newer name for "system"; chat templates know only the latter.
    messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in body.messages]
    check_prompt_chars(ctx.engine, sum(len(m["content"]) for m in messages), "the messages' text")
    try:
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True)
    except TokenizerError as exc:  # the template refused this conversation (e.g. roles out of order)
        raise InvalidRequestError(f"messages: {exc}") from exc
    # The template already holds the BOS and the role markers, which must become their tokens.
    return encode_text(ctx.engine, text, add_special_tokens=False)


def _chat_max_tokens(ctx: ApiContext, body: ChatCompletionRequest, prompt_len: int) -> int:
    limit = body.max_completion_tokens or body.max_tokens
    if limit is not None:
        return limit
    room = ctx.engine.model_config.max_position_embeddings - prompt_len
    return min(max(1, room), MAX_NEW_TOKENS_CAP)  # a prompt with no room left gets the engine's error


def _usage(result: GenerationResult) -> dict[str, Any]:
    u = result.usage
    return {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.generated_tokens,
            "total_tokens": u.prompt_tokens + u.generated_tokens,
            "prompt_tokens_details": {"cached_tokens": u.cached_tokens}}


def _finish_reason(result: GenerationResult) -> str:
    return "length" if result.finish_reason is FinishReason.LENGTH else "stop"


@dataclass
class _Run:
    ctx: ApiContext
    chat: bool
    generation: Generation
    include_usage: bool
    path: str
    id: str = ""
    created: int = field(default_factory=lambda: int(time.time()))

    def __post_init__(self) -> None:
        self.id = f"{'chatcmpl' if self.chat else 'cmpl'}-{uuid.uuid4().hex}"

    def _envelope(self, choices: list[dict[str, Any]], object_: str) -> dict[str, Any]:
        return {"id": self.id, "object": object_, "created": self.created, "model": self.ctx.model_name,
                "choices": choices}

    def response(self, end: Finished) -> dict[str, Any]:
        result = end.result
        if self.chat:
            choice = {"index": 0, "message": {"role": "assistant", "content": result.text}, "logprobs": None,
                      "finish_reason": _finish_reason(result)}
            body = self._envelope([choice], "chat.completion")
        else:
            choice = {"index": 0, "text": result.text, "logprobs": None, "finish_reason": _finish_reason(result)}
            body = self._envelope([choice], "text_completion")
        return {**body, "usage": _usage(result)}

    def chunk(self, text: str | None, finish_reason: str | None = None, *, role: bool = False) -> dict[str, Any]:
        if self.chat:
            delta: dict[str, Any] = {}
            if role:
                delta["role"] = "assistant"
            if text is not None:
                delta["content"] = text
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            return self._envelope([choice], "chat.completion.chunk")
        choice = {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish_reason}
        return self._envelope([choice], "text_completion")

    async def events(self, item: Piece | Finished) -> AsyncIterator[str]:
        try:
            if self.chat:
                yield sse(self.chunk("", role=True))
            while isinstance(item, Piece):
                if item.text:
                    yield sse(self.chunk(item.text))
                item = await self.generation.next()
            if item.error is not None:
                yield sse(error_body(self.path, status_of(item.error), message_of(item.error)))
                return
            last = item.last.text if item.last is not None else item.tail
            if last:
                yield sse(self.chunk(last))
            yield sse(self.chunk(None, _finish_reason(item.result)))
            if self.include_usage:
                object_ = "chat.completion.chunk" if self.chat else "text_completion"
                yield sse({**self._envelope([], object_), "usage": _usage(item.result)})
            yield sse("[DONE]")
        finally:
            self.generation.cancel()  # the client went away mid-stream; a no-op once finished


def openai_router(ctx: ApiContext) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["OpenAI"])

    async def answer(request: Request, body: OpenAISampling, chat: bool, ids: list[int], max_tokens: int):
        params = openai_sampling(body, max_tokens)
        endpoint = "chat_completions" if chat else "completions"
        generation = Generation(ctx, endpoint, ids, params, getattr(body, "healed_text", None) or "").start()
        include_usage = body.stream_options is not None and body.stream_options.include_usage
        run = _Run(ctx, chat, generation, include_usage, request.url.path)
        if body.stream:
            return EventStream(run.events(await first_item(request, generation)), headers=SSE_HEADERS)
        _, end = await finished(request, generation)
        return JSONResponse(run.response(end))

    @router.post("/completions", response_model=Completion, responses={200: COMPLETION_200, **ERRORS})
    async def completions(request: Request, body: CompletionRequest) -> JSONResponse | EventStream:
        """Complete `prompt` (text or token ids)."""
        ids = await ctx.run(_completion_prompt, ctx, body)
        return await answer(request, body, False, ids, body.max_tokens or DEFAULT_COMPLETION_TOKENS)

    @router.post("/chat/completions", response_model=ChatCompletion, responses={200: CHAT_200, **ERRORS})
    async def chat_completions(request: Request, body: ChatCompletionRequest) -> JSONResponse | EventStream:
        """Answer a conversation, rendered with the model's chat template."""
        ids = await ctx.run(_chat_prompt, ctx, body)
        return await answer(request, body, True, ids, _chat_max_tokens(ctx, body, len(ids)))

    @router.get("/models", response_model=ModelList, responses={401: ERRORS[401]})
    async def models() -> dict[str, Any]:
        """The one model this engine serves."""
        card = {"id": ctx.model_name, "object": "model", "created": ctx.created, "owned_by": "loopcoder",
                "max_model_len": ctx.engine.model_config.max_position_embeddings}
        return {"object": "list", "data": [card]}

    return router
