"""The HTTP API's request and response bodies, as pydantic models (they make /openapi.json).

Two families share the engine: TGI's (`/generate`, `/generate_stream`, `/`) and
OpenAI's (`/v1/completions`, `/v1/chat/completions`, `/v1/models`). Every numeric bound
the engine enforces (`SamplingParams`) is stated here too, so a bad value is refused with
a message naming the field before any engine work, and the schema says what is accepted.

Fields that clients of those APIs send but loopcoder does not implement (penalties, n > 1,
echo, logprobs) are declared with the one value that means "off": anything else is
refused by name, never silently ignored. Fields nobody declared are ignored, as both
APIs' own servers do.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from ...sampling import MAX_NEW_TOKENS_CAP, MAX_STOP_STRING_LEN, MAX_STOP_STRINGS

SEED_LIMIT = 1 << 64

StopString = Annotated[str, Field(min_length=1, max_length=MAX_STOP_STRING_LEN)]
StopList = Annotated[list[StopString], Field(max_length=MAX_STOP_STRINGS)]
MaxTokens = Annotated[int, Field(ge=1, le=MAX_NEW_TOKENS_CAP)]
Temperature = Annotated[float, Field(ge=0, description="0 means greedy")]
TopP = Annotated[float, Field(gt=0, le=1)]
TopK = Annotated[int, Field(ge=0, description="0 disables top-k")]
Seed = Annotated[int, Field(ge=0, lt=SEED_LIMIT)]
NonEmptyText = Annotated[str, Field(min_length=1)]
TokenIds = Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1)]


class _Body(BaseModel):
    # strict: true is not 1 and "5" is not 5, as the schema says. inf and nan parse from
    # JSON (Python's json accepts "Infinity"); no sampling value wants them.
    model_config = ConfigDict(strict=True, allow_inf_nan=False, extra="ignore")


# Fields clients send that loopcoder does not implement: (the value that means "off", why).
_OFF_ONLY: dict[str, tuple[Any, str]] = {
    "n": (1, "loopcoder returns one choice per request; send n requests"),
    "best_of": (1, "loopcoder generates one sequence per request"),
    "echo": (False, "the prompt is not echoed; prepend it yourself"),
    "logprobs": (False, "the engine does not compute log-probabilities"),
    "top_logprobs": (0, "the engine does not compute log-probabilities"),
    "top_n_tokens": (0, "the engine does not compute alternative tokens"),
    "decoder_input_details": (False, "prompt token details are not returned"),
    "presence_penalty": (0, "loopcoder has no presence penalty; leave it out"),
    "frequency_penalty": (0, "loopcoder has no frequency penalty; leave it out"),
    "repetition_penalty": (1, "loopcoder has no repetition penalty; leave it out"),
    "typical_p": (1, "typical sampling is not implemented; use top_p"),
    "watermark": (False, "watermarking is not implemented"),
    "suffix": (None, "fill-in-the-middle is served by the editor features, not through suffix"),
}


def _off_only(value: Any, info: ValidationInfo) -> Any:
    """Let a field of `_OFF_ONLY` through when null or its "off" value; refuse anything else by name."""
    off, why = _OFF_ONLY[info.field_name]
    if value is None:
        return value
    if isinstance(off, bool) or isinstance(value, bool) or off is None:
        ok = value is off
    else:
        ok = isinstance(value, (int, float)) and value == off
    if not ok:
        raise ValueError(f"{info.field_name}={value!r} is not supported: {why}")
    return value


# --- TGI -------------------------------------------------------------------------------------


class TGIParameters(_Body):
    max_new_tokens: MaxTokens = 20
    do_sample: bool = Field(False, description="false: greedy, whatever temperature, top_k and top_p say")
    temperature: Temperature | None = Field(None, description="when sampling; null means 1.0")
    top_p: TopP | None = None
    top_k: TopK | None = None
    seed: Seed | None = Field(None, description="when sampling; null draws one, reported in details")
    stop: StopList = Field(default_factory=list, description="stop sequences, cut from the output")
    return_full_text: bool = Field(False, description="prepend the prompt text to generated_text")
    details: bool = Field(False, description="add finish_reason, seed and the generated tokens")
    truncate: Annotated[int, Field(ge=1)] | None = Field(None, description="keep only the prompt's last N tokens")
    # Sent by TGI clients (huggingface_hub sends nulls); only their "off" value is accepted.
    repetition_penalty: Annotated[float, Field(ge=1, le=1)] | None = None
    frequency_penalty: Annotated[float, Field(ge=0, le=0)] | None = None
    typical_p: Annotated[float, Field(ge=1, le=1)] | None = None
    top_n_tokens: Annotated[int, Field(ge=0, le=0)] | None = None
    best_of: Annotated[int, Field(ge=1, le=1)] | None = None
    watermark: Literal[False] | None = None
    decoder_input_details: Literal[False] | None = None

    _off = field_validator("repetition_penalty", "frequency_penalty", "typical_p", "top_n_tokens", "best_of",
                           "watermark", "decoder_input_details", mode="before")(_off_only)


class TGIRequest(_Body):
    inputs: str = Field(min_length=1, description="the prompt text; special-token strings in it become their tokens")
    parameters: TGIParameters = Field(default_factory=TGIParameters)


class TGICompatRequest(TGIRequest):
    stream: bool = Field(False, description="true: answer as /generate_stream does")


class TGIToken(BaseModel):
    id: int
    text: str
    logprob: float | None = Field(None, description="always null: the engine does not compute log-probabilities")
    special: bool


class TGIDetails(BaseModel):
    finish_reason: Literal["length", "eos_token", "stop_sequence"]
    generated_tokens: int
    seed: int | None
    prefill: list[TGIToken] = Field(default_factory=list, description="always empty")
    tokens: list[TGIToken]


class TGIGenerateResponse(BaseModel):
    generated_text: str
    details: TGIDetails | None = Field(None, description="present when parameters.details is true")


class TGIStreamDetails(BaseModel):
    finish_reason: Literal["length", "eos_token", "stop_sequence"]
    generated_tokens: int
    seed: int | None


class TGIStreamEvent(BaseModel):
    """One `data:` line of /generate_stream: one generated token; the last one also has the text."""

    index: int
    token: TGIToken
    generated_text: str | None = Field(description="null until the last event, which has the whole text")
    details: TGIStreamDetails | None = Field(description="on the last event when parameters.details is true")


class TGIError(BaseModel):
    error: str
    error_type: str


# --- OpenAI ----------------------------------------------------------------------------------


class StreamOptions(_Body):
    include_usage: bool = Field(False, description="send a last chunk with usage and no choices")


class JsonSchemaFormat(_Body):
    name: str = Field("answer", description="a name for the schema (unused)")
    schema_: dict[str, Any] = Field(alias="schema", description="the JSON schema every answer must satisfy")
    strict: bool | None = Field(None, description="ignored: answers always follow the schema")


class ResponseFormat(_Body):
    type: Literal["text", "json_object", "json_schema"] = Field(
        description="json_object: any JSON object; json_schema: JSON valid under json_schema.schema "
                    "(constrained decoding: every token is masked to the schema)")
    json_schema: JsonSchemaFormat | None = None

    def schema(self) -> dict[str, Any] | None:
        if self.type == "text":
            return None
        if self.type == "json_object":
            return {"type": "object"}
        if self.json_schema is None:
            raise ValueError("response_format.json_schema is required when type is json_schema")
        return self.json_schema.schema_


class OpenAISampling(_Body):
    model: str | None = Field(None, description="ignored: the engine serves one model, named in every answer")
    temperature: Temperature = 1.0
    top_p: TopP = 1.0
    top_k: TopK = Field(0, description="an extension (as in vLLM)")
    seed: Seed | None = None
    stop: StopString | StopList | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    ignore_eos: bool = Field(False, description="an extension (as in vLLM): generate until max_tokens")
    response_format: ResponseFormat | None = Field(None, description="JSON output under a schema, as OpenAI's")
    user: str | None = Field(None, description="ignored")
    n: Annotated[int, Field(ge=1, le=1)] | None = None
    presence_penalty: Annotated[float, Field(ge=0, le=0)] | None = None
    frequency_penalty: Annotated[float, Field(ge=0, le=0)] | None = None

    _off = field_validator("n", "presence_penalty", "frequency_penalty", mode="before")(_off_only)

    def stop_strings(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])


class CompletionRequest(OpenAISampling):
    prompt: NonEmptyText | TokenIds | Annotated[list[NonEmptyText], Field(min_length=1, max_length=1)] \
            | Annotated[list[TokenIds], Field(min_length=1, max_length=1)] = Field(
        description="text, or token ids; a batch (a list of prompts) must hold exactly one")
    max_tokens: MaxTokens | None = Field(16, description="null means 16")
    healed_text: Annotated[str, Field(max_length=256)] | None = Field(
        None, description="an extension (loopcoder's token healing): the text of a prompt token the client cut "
                          "off; the first generated token must start with it, and it is left out of the answer")
    echo: Literal[False] | None = None
    logprobs: None = None
    best_of: Annotated[int, Field(ge=1, le=1)] | None = None
    suffix: None = None

    _off_here = field_validator("echo", "logprobs", "best_of", "suffix", mode="before")(_off_only)

    @field_validator("prompt", mode="before")
    @classmethod
    def _one_prompt(cls, value: Any) -> Any:
        # Before the union is tried, so a batch gets this message rather than one per union member.
        if isinstance(value, list) and len(value) > 1 and all(isinstance(v, (str, list)) for v in value):
            raise ValueError(f"a batch of {len(value)} prompts is not supported: send one request per prompt")
        return value

    def single_prompt(self) -> str | list[int]:
        """The prompt, out of its one-element batch if it came in one."""
        p = self.prompt
        return p[0] if isinstance(p, list) and isinstance(p[0], (str, list)) else p


class TextPart(_Body):
    type: Literal["text"]
    text: str


class ChatMessage(_Body):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] = Field(description="text, or a list of text parts (joined)")

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class ChatCompletionRequest(OpenAISampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: MaxTokens | None = Field(None, description="null: up to the end of the model's context")
    max_completion_tokens: MaxTokens | None = Field(None, description="the newer name of max_tokens")
    logprobs: Literal[False] | None = None
    top_logprobs: Annotated[int, Field(ge=0, le=0)] | None = None

    _off_here = field_validator("logprobs", "top_logprobs", mode="before")(_off_only)

    @model_validator(mode="after")
    def _one_limit(self) -> "ChatCompletionRequest":
        if self.max_tokens is not None and self.max_completion_tokens is not None \
                and self.max_tokens != self.max_completion_tokens:
            raise ValueError("max_tokens and max_completion_tokens disagree: send one of them")
        return self


FinishReason = Literal["stop", "length"]


class PromptTokensDetails(BaseModel):
    cached_tokens: int = Field(description="prompt tokens whose K/V the engine reused (prefix cache)")


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails


class CompletionChoice(BaseModel):
    index: int
    text: str
    logprobs: None = None
    finish_reason: FinishReason | None


class Completion(BaseModel):
    """The answer of /v1/completions; with stream=true each SSE chunk has this shape, with
    `usage` null and `finish_reason` null until the last chunk."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    logprobs: None = None
    finish_reason: FinishReason


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


class ChatDelta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChatChunkChoice(BaseModel):
    index: int
    delta: ChatDelta
    logprobs: None = None
    finish_reason: FinishReason | None


class ChatCompletionChunk(BaseModel):
    """One `data:` line of a streamed chat completion."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChatChunkChoice]
    usage: Usage | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "loopcoder"
    max_model_len: int


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: int | None = None


class OpenAIError(BaseModel):
    error: OpenAIErrorDetail


# --- health ----------------------------------------------------------------------------------


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    model: str
    error: str | None = Field(None, description="why the engine is unavailable")
    queue_depth: int | None = None
    running: int | None = None
    warm_documents: int | None = None


# --- server-sent events, for the schema ---------------------------------------------------------

STREAM_MODELS = (TGIStreamEvent, ChatCompletionChunk)  # only streams name them: http.py adds them to the schema


def sse_content(*payloads: type[BaseModel], done: bool = False) -> dict[str, Any]:
    """An OpenAPI `content` entry for an event stream whose `data:` lines hold one of `payloads` as
    JSON (or, with `done`, the literal [DONE]); OpenAPI before 3.2 reads `schema` as one event's."""
    payload = {"type": "string", "contentMediaType": "application/json",
               "contentSchema": {"anyOf": [{"$ref": f"#/components/schemas/{m.__name__}"} for m in payloads]}}
    data = {"anyOf": [{"const": "[DONE]"}, payload]} if done else payload
    return {"text/event-stream": {"schema": {"type": "object", "required": ["data"], "properties": {"data": data}}}}
