"""Remote backends: the same `EngineAPI` served by someone else's server over HTTP.

For users who outgrow one machine: vLLM, SGLang and llama.cpp's server (OpenAI
`/v1/completions`), TGI (`/generate_stream`), or another loopcoder engine's HTTP API
(OpenAI-compatible). Front ends build their prompts as token ids with a local copy of
the served model's tokenizer, exactly as for the local engine:

- `OpenAIBackend` sends the ids themselves as the prompt (vLLM, SGLang, llama.cpp's
  server and loopcoder accept a list of token ids), so the prompt is the one the front
  end built, token for token; a server that refuses ids (llama-cpp-python's) gets their
  text from then on;
- `TGIBackend` sends their text (TGI takes text only).

What a remote server cannot do, and what we do instead:
- warm documents: the server's own prefix caching keeps a document's K/V (vLLM and
  SGLang by default, llama.cpp's `cache_prompt`); `prefill` sends a one-token request
  to warm it, `close` has nothing to free;
- token healing: the healed text is put back at the end of the prompt;
- `stop_when` (the end of the cursor's block) is checked here on the streamed text,
  and the stream is closed when it fires, which stops generation on the server;
- cancellation closes the connection the same way;
- a JSON schema is sent as OpenAI's `response_format` (vLLM, SGLang) and as
  llama.cpp's `json_schema`; the answer is checked against the schema here, and a
  server that ignored it gets ConstrainedDecodingError.
"""

from __future__ import annotations

import http.client
import json
import logging
import threading
import time
from typing import Any, Iterator
from urllib.parse import urlsplit

from ..api import EngineAPI, GenerationResult, Priority, RemoteModelConfig, Usage, as_id_list
from ..errors import ConstrainedDecodingError, EngineUnavailableError, InvalidRequestError, LoopcoderError
from ..sampling import FinishReason, SamplingParams
from ..tokenizer import Tokenizer

log = logging.getLogger(__name__)

DEFAULT_CONTEXT = 8192  # when the server does not say how long its model's context is
_FINISH = {"stop": FinishReason.STOP, "eos_token": FinishReason.STOP, "stop_sequence": FinishReason.STOP,
           "length": FinishReason.LENGTH}


class _Stream:
    """One streaming HTTP request; `close()` from any thread ends it (and the server's work)."""

    def __init__(self, url: str, path: str, body: dict, headers: dict[str, str], timeout_s: float) -> None:
        parts = urlsplit(url)
        kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        self.conn = kind(parts.hostname, parts.port, timeout=timeout_s)
        full_path = parts.path.rstrip("/") + path
        try:
            self.conn.request("POST", full_path, json.dumps(body), {"Content-Type": "application/json", **headers})
            self.response = self.conn.getresponse()
        except OSError as exc:
            self.conn.close()
            raise EngineUnavailableError(f"cannot reach the remote backend at {url}: {exc}") from None
        if self.response.status != 200:
            detail = self.response.read(4000).decode("utf-8", "replace")
            self.conn.close()
            raise _http_error(url + path, self.response.status, detail)

    def events(self) -> Iterator[dict]:
        """The server-sent events' JSON payloads, until `[DONE]` or the end of the stream."""
        while True:
            line = self.response.readline()
            if not line:
                return
            line = line.strip()
            if not line.startswith(b"data:"):
                continue  # comments, event names, blank separators
            data = line[5:].strip()
            if data == b"[DONE]":
                return
            try:
                yield json.loads(data)
            except json.JSONDecodeError:
                raise EngineUnavailableError(f"the remote backend sent a malformed event: {data[:200]!r}") from None

    def close(self) -> None:
        try:
            self.conn.sock and self.conn.sock.shutdown(2)
        except OSError:
            pass
        self.conn.close()


def _http_error(where: str, status: int, detail: str) -> LoopcoderError:
    try:
        body = json.loads(detail)
        message = body.get("error", body)
        if isinstance(message, dict):
            message = message.get("message") or json.dumps(message)
        if not isinstance(message, str):
            message = body.get("message") or body.get("detail") or detail
    except (json.JSONDecodeError, AttributeError):
        message = detail.strip() or "no details"
    text = f"the remote backend answered {status} for {where}: {message}"
    if status in (401, 403):
        return EngineUnavailableError(f"{text} (set the API key: apiKey, --api-key or LOOPCODER_API_KEY)")
    if status in (400, 404, 413, 422):
        return InvalidRequestError(text)
    return EngineUnavailableError(text)


class _RemoteBackend(EngineAPI):
    def __init__(self, url: str, tokenizer: Tokenizer, *, model: str | None = None, api_key: str | None = None,
                 timeout_s: float = 300.0, context: int | None = None) -> None:
        if not url.startswith(("http://", "https://")):
            raise InvalidRequestError(f"remote backend url must start with http:// or https://, not {url!r}")
        self.url = url.rstrip("/")
        self.tokenizer = tokenizer
        self.api_key = api_key
        self.timeout_s = timeout_s
        self.requests = 0
        self.text_prompts = False  # True once the server refused a prompt of token ids
        self.native_healing = False  # the server is a loopcoder engine: it takes `healed_text`
        self.model_name, served_context = self._discover_model(model)
        self.model_config = RemoteModelConfig("remote", tokenizer.vocab_size,
                                              context or served_context or DEFAULT_CONTEXT, self.model_name)

    # -- what each kind of server differs in --------------------------------------------

    def _discover_model(self, model: str | None) -> tuple[str, int | None]:
        return model or "", None

    def _request(self, ids: list[int], params: SamplingParams) -> tuple[str, dict]:
        raise NotImplementedError

    def _parse(self, event: dict) -> tuple[str, str | None, dict | None]:
        """(text delta, finish reason or None, usage or None) of one streamed event."""
        raise NotImplementedError

    # -- EngineAPI ----------------------------------------------------------------------

    @property
    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def _get_json(self, path: str) -> Any:
        parts = urlsplit(self.url)
        kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        conn = kind(parts.hostname, parts.port, timeout=min(self.timeout_s, 30))
        try:
            conn.request("GET", parts.path.rstrip("/") + path, headers=self._headers)
            response = conn.getresponse()
            body = response.read().decode("utf-8", "replace")
        except OSError as exc:
            raise EngineUnavailableError(f"cannot reach the remote backend at {self.url}: {exc}") from None
        finally:
            conn.close()
        if response.status != 200:
            raise _http_error(self.url + path, response.status, body)
        try:
            return json.loads(body)
        except json.JSONDecodeError:
            raise EngineUnavailableError(f"{self.url}{path} did not answer JSON: {body[:200]!r}") from None

    def generate_for(self, key: str, token_ids: list[int], params: SamplingParams, on_token=None, cancelled=None,
                     *, healed_text: str = "", stop_when=None, priority: Priority = Priority.INTERACTIVE,
                     client: str = "") -> GenerationResult:
        ids = as_id_list(token_ids)
        if not ids:
            raise InvalidRequestError("empty prompt: at least one token is needed")
        prefix = ""
        native_heal = ""
        if healed_text and self.native_healing:
            native_heal = healed_text  # a loopcoder engine heals the token itself
        elif healed_text:
            healed = self._heal(ids, healed_text)
            if healed is None:  # no way to constrain the first token: give the model its token back
                ids += self.tokenizer.encode(healed_text, parse_special=False)
            else:  # the likeliest token that starts with the healed text, chosen here
                ids += self.tokenizer.encode(healed, parse_special=False)
                prefix = healed[len(healed_text):]
        started = time.perf_counter()
        stream = self._open(ids, params, native_heal)
        self.requests += 1
        result = GenerationResult([], "", FinishReason.LENGTH, Usage(prompt_tokens=len(ids)))
        done = threading.Event()
        if cancelled is not None:
            threading.Thread(target=self._watch, args=(stream, cancelled, done), daemon=True).start()
        parts: list[str] = [prefix] if prefix else []
        reason: str | None = None
        if prefix and on_token is not None:
            on_token(-1, prefix)
        try:
            for event in stream.events():
                delta, finish, usage = self._parse(event)
                if usage:
                    result.usage.prompt_tokens = usage.get("prompt_tokens", result.usage.prompt_tokens)
                    result.usage.generated_tokens = usage.get("completion_tokens", 0)
                    details = usage.get("prompt_tokens_details") or {}
                    result.usage.cached_tokens = details.get("cached_tokens") or 0
                if delta:
                    if not result.timings.first_token_s:
                        result.timings.first_token_s = time.perf_counter() - started
                    parts.append(delta)
                    if on_token is not None:
                        on_token(-1, delta)
                    if stop_when is not None and stop_when("".join(parts)):
                        reason = "stop"
                        break
                if finish:
                    reason = finish
        # Closing the connection from the cancel watcher breaks http.client's read in any of these ways.
        except (OSError, http.client.HTTPException, AttributeError, ValueError) as exc:
            if not (cancelled is not None and cancelled()):
                raise EngineUnavailableError(f"the remote backend's stream broke: {exc}") from None
        finally:
            done.set()
            stream.close()
        if cancelled is not None and cancelled() and reason is None:
            result.finish_reason = FinishReason.CANCELLED
        else:
            result.finish_reason = _FINISH.get(reason or "length", FinishReason.STOP)
        result.text = "".join(parts)
        if not result.usage.generated_tokens:
            result.usage.generated_tokens = len(self.tokenizer.encode(result.text, parse_special=False))
        result.usage.prefill_tokens = result.usage.prompt_tokens - result.usage.cached_tokens
        result.timings.total_s = time.perf_counter() - started
        if params.json_schema is not None and result.finish_reason is not FinishReason.CANCELLED:
            _check_schema(result.text, params.json_schema, self.url, complete=result.finish_reason is FinishReason.STOP)
        return result

    def _heal(self, ids: list[int], healed_text: str) -> str | None:
        """Token healing over HTTP: the text of the likeliest next token that starts with
        `healed_text`, from the server's top log-probabilities (None: not available)."""
        return None

    def _open(self, ids: list[int], params: SamplingParams, healed_text: str = "") -> _Stream:
        path, body = self._request(ids, params)
        if healed_text:
            body["healed_text"] = healed_text
        try:
            return _Stream(self.url, path, body, self._headers, self.timeout_s)
        except LoopcoderError as exc:
            if self.text_prompts or "prompt" not in str(exc):
                raise
        # This server takes text prompts only (llama-cpp-python's): send the ids' text from now on.
        log.info("%s refuses token-id prompts: sending text", self.url)
        self.text_prompts = True
        path, body = self._request(ids, params)
        return _Stream(self.url, path, body, self._headers, self.timeout_s)

    def prompt_text(self, ids: list[int]) -> str:
        """The prompt as text, for servers that tokenize it themselves (and add their own BOS)."""
        if ids and self.tokenizer.bos_id is not None and ids[0] == self.tokenizer.bos_id:
            ids = ids[1:]
        return self.tokenizer.decode(ids)

    @staticmethod
    def _watch(stream: _Stream, cancelled, done: threading.Event) -> None:
        while not done.wait(0.02):
            if cancelled():
                stream.close()
                return

    def prefill(self, key: str, token_ids: list[int], cancelled=None, *, priority: Priority = Priority.BACKGROUND,
                client: str = "") -> Usage:
        """Warm the server's prefix cache with this prompt (a one-token request)."""
        return self.generate_for(key, token_ids, SamplingParams(max_new_tokens=1), cancelled=cancelled).usage

    def open(self, key: str) -> None:
        pass

    def close(self, key: str, keep_cached: bool = True) -> None:
        pass  # the server's prefix cache is its own to manage

    def stats(self) -> dict:
        return {"backend": type(self).__name__, "url": self.url, "model": self.model_name, "requests": self.requests,
                "max_position_embeddings": self.model_config.max_position_embeddings}


_JSON_STARTS = tuple('{["-0123456789tfn')


def _check_schema(text: str, schema: dict, url: str, complete: bool) -> None:
    """A server that ignored the schema is told apart from one cut by the token limit: JSON
    that is not even begun is the server's fault."""
    if not complete:
        if text.strip() and not text.lstrip().startswith(_JSON_STARTS):
            raise ConstrainedDecodingError(f"the remote backend at {url} did not follow the JSON schema (its "
                                           f"answer is not JSON): does it support structured output?")
        return
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise ConstrainedDecodingError(f"the remote backend at {url} did not follow the JSON schema (its answer "
                                       f"does not parse): does it support structured output?") from None
    try:
        import jsonschema
    except ImportError:
        return
    try:
        jsonschema.validate(value, schema)
    except jsonschema.ValidationError as exc:
        raise ConstrainedDecodingError(f"the remote backend at {url} answered JSON that breaks the schema: "
                                       f"{exc.message}") from None


class OpenAIBackend(_RemoteBackend):
    """An OpenAI-compatible `/v1/completions` server: vLLM, SGLang, llama.cpp's server, loopcoder.

    Its url is the server's root; one ending in `/v1` (the OpenAI client's `base_url`
    convention) means the same server."""

    def __init__(self, url: str, tokenizer: Tokenizer, **options: Any) -> None:
        super().__init__(url.rstrip("/").removesuffix("/v1"), tokenizer, **options)

    def _discover_model(self, model: str | None) -> tuple[str, int | None]:
        listed = self._get_json("/v1/models").get("data") or []
        if model is None:
            if not listed:
                raise EngineUnavailableError(f"{self.url}/v1/models lists no model: name one with --model")
            entry = listed[0]
        else:
            entry = next((m for m in listed if m.get("id") == model), {"id": model})
        self.native_healing = entry.get("owned_by") == "loopcoder"
        # vLLM reports max_model_len; llama.cpp n_ctx in meta; others nothing.
        context = entry.get("max_model_len") or (entry.get("meta") or {}).get("n_ctx_train")
        return entry["id"], int(context) if context else None

    def _request(self, ids: list[int], params: SamplingParams) -> tuple[str, dict]:
        prompt = self.prompt_text(ids) if self.text_prompts else ids
        body: dict[str, Any] = {"model": self.model_name, "prompt": prompt, "max_tokens": params.max_new_tokens,
                                "temperature": params.temperature, "top_p": params.top_p, "stream": True,
                                "stream_options": {"include_usage": True}}
        if params.stop:
            body["stop"] = list(params.stop)
        if params.seed is not None:
            body["seed"] = params.seed
        if params.top_k:
            body["top_k"] = params.top_k
        if params.ignore_eos:
            body["ignore_eos"] = True
        if params.stop_token_ids:
            body["stop_token_ids"] = list(params.stop_token_ids)
        if params.json_schema is not None:
            body["response_format"] = {"type": "json_schema",
                                       "json_schema": {"name": "answer", "schema": params.json_schema}}
            body["json_schema"] = params.json_schema  # llama.cpp's spelling
        return "/v1/completions", body

    HEAL_CANDIDATES = 20  # the most top log-probabilities OpenAI-style servers return

    def _heal(self, ids: list[int], healed_text: str) -> str | None:
        if getattr(self, "_no_logprobs", False):
            return None
        prompt = self.prompt_text(ids) if self.text_prompts else ids
        body = {"model": self.model_name, "prompt": prompt, "max_tokens": 1, "temperature": 0,
                "logprobs": self.HEAL_CANDIDATES}
        stream = None
        try:
            try:
                stream = _Stream(self.url, "/v1/completions", {**body, "stream": False}, self._headers, self.timeout_s)
            except LoopcoderError as exc:
                if self.text_prompts or "prompt" not in str(exc):
                    raise
                self.text_prompts = True  # as in _open: this server takes text prompts only
                body["prompt"] = self.prompt_text(ids)
                stream = _Stream(self.url, "/v1/completions", {**body, "stream": False}, self._headers, self.timeout_s)
            answer = json.loads(stream.response.read())
            top = ((answer["choices"][0].get("logprobs") or {}).get("top_logprobs") or [None])[0]
        except (LoopcoderError, OSError, ValueError, KeyError, IndexError, TypeError) as exc:
            log.info("%s gives no log-probabilities (%s): token healing off", self.url, exc)
            self._no_logprobs = True
            return None
        finally:
            if stream is not None:
                stream.close()
        if not isinstance(top, dict) or not top:
            self._no_logprobs = True
            return None
        fitting = [(logprob, text) for text, logprob in top.items() if text.startswith(healed_text)]
        return max(fitting)[1] if fitting else None

    def _parse(self, event: dict) -> tuple[str, str | None, dict | None]:
        if "error" in event:
            error = event["error"]
            raise EngineUnavailableError(f"the remote backend failed mid-stream: "
                                         f"{error.get('message') if isinstance(error, dict) else error}")
        choices = event.get("choices") or [{}]
        return choices[0].get("text") or "", choices[0].get("finish_reason"), event.get("usage")


class TGIBackend(_RemoteBackend):
    """Text Generation Inference's `/generate_stream` (text prompts)."""

    text_prompts = True

    def _discover_model(self, model: str | None) -> tuple[str, int | None]:
        try:
            info = self._get_json("/info")
        except LoopcoderError:
            return model or "tgi", None
        context = info.get("max_input_tokens") or info.get("max_total_tokens")
        return model or info.get("model_id") or "tgi", int(context) if context else None

    def _request(self, ids: list[int], params: SamplingParams) -> tuple[str, dict]:
        parameters: dict[str, Any] = {"max_new_tokens": params.max_new_tokens, "details": False,
                                      "return_full_text": False}
        if params.temperature > 0:
            parameters.update(do_sample=True, temperature=params.temperature)
            if params.top_p < 1:
                parameters["top_p"] = params.top_p
            if params.top_k:
                parameters["top_k"] = params.top_k
        if params.stop:
            parameters["stop"] = list(params.stop)
        if params.seed is not None:
            parameters["seed"] = params.seed
        if params.json_schema is not None:
            parameters["grammar"] = {"type": "json", "value": params.json_schema}
        return "/generate_stream", {"inputs": self.prompt_text(ids), "parameters": parameters}

    def _parse(self, event: dict) -> tuple[str, str | None, dict | None]:
        if "error" in event:
            raise EngineUnavailableError(f"the remote backend failed mid-stream: {event['error']}")
        token = event.get("token") or {}
        text = "" if token.get("special") else token.get("text") or ""
        details = event.get("details") or {}
        finish = details.get("finish_reason") if event.get("generated_text") is not None else None
        usage = None
        if details.get("generated_tokens"):
            usage = {"completion_tokens": details["generated_tokens"]}
        return text, finish, usage
