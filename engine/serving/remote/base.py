"""What every remote backend shares: the `EngineAPI` over one streamed HTTP request per
generation. A subclass says how its server is asked (`_request`), how its events read
(`_parse`) and how its model is found (`_discover_model`)."""

from __future__ import annotations

import http.client
import logging
import threading
import time
from typing import Any

from ...api import CancelCheck, EngineAPI, GenerationResult, Priority, RemoteModelConfig, StopPredicate, Usage, as_id_list
from ...errors import EngineUnavailableError, InvalidRequestError, LoopcoderError
from ...sampling import FinishReason, SamplingParams, watch_stop
from ...tokenizer import Tokenizer
from .stream import Stream, check_schema, get_json

log = logging.getLogger(__name__)

DEFAULT_CONTEXT = 8192  # when the server does not say how long its model's context is
_FINISH = {"stop": FinishReason.STOP, "eos_token": FinishReason.STOP, "stop_sequence": FinishReason.STOP,
           "length": FinishReason.LENGTH}
# Closing the connection from the cancel watcher breaks http.client's read in any of these ways.
_BROKEN_READ = (OSError, http.client.HTTPException, AttributeError, ValueError)


class Reply:
    """One answer as it streams in: its text, read once (by `stop_when` too), the server's
    usage and the time of the first token."""

    def __init__(self, prompt_tokens: int, on_token, stop_when: StopPredicate | None) -> None:
        self.result = GenerationResult([], "", FinishReason.LENGTH, Usage(prompt_tokens=prompt_tokens))
        self.started = time.perf_counter()
        self._parts: list[str] = []
        self._on_token = on_token
        self._stop = watch_stop(stop_when) if stop_when is not None else None

    def show(self, text: str) -> bool:
        """Hand `text` to the caller; True when `stop_when` says the generation is over."""
        self._parts.append(text)
        if self._on_token is not None:
            self._on_token(-1, text)
        return self._stop is not None and self._stop.feed(text)

    def add(self, delta: str) -> bool:
        """A streamed delta: `show`, and the first one's time."""
        if not self.result.timings.first_token_s:
            self.result.timings.first_token_s = time.perf_counter() - self.started
        return self.show(delta)

    def count(self, usage: dict | None) -> None:
        """The server's usage report, where it sends one."""
        if not usage:
            return
        mine = self.result.usage
        mine.prompt_tokens = usage.get("prompt_tokens", mine.prompt_tokens)
        mine.generated_tokens = usage.get("completion_tokens", 0)
        mine.cached_tokens = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0

    def finish(self, reason: FinishReason, tokenizer: Tokenizer) -> GenerationResult:
        result = self.result
        result.finish_reason = reason
        result.text = "".join(self._parts)
        if not result.usage.generated_tokens:  # the server sent no usage: count it here
            result.usage.generated_tokens = len(tokenizer.encode(result.text, parse_special=False))
        result.usage.prefill_tokens = result.usage.prompt_tokens - result.usage.cached_tokens
        result.timings.total_s = time.perf_counter() - self.started
        return result


def finish_reason(reason: str | None, cancelled: CancelCheck | None) -> FinishReason:
    """Ours, from the server's finish reason ("stop" when `stop_when` ended it; None: the stream just ended)."""
    if reason is None and cancelled is not None and cancelled():
        return FinishReason.CANCELLED
    return _FINISH.get(reason or "length", FinishReason.STOP)


class RemoteBackend(EngineAPI):
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

    def _heal(self, ids: list[int], healed_text: str) -> str | None:
        """Token healing over HTTP: the text of the likeliest next token that starts with
        `healed_text`, from the server's top log-probabilities (None: not available)."""
        return None

    # -- EngineAPI ----------------------------------------------------------------------

    @property
    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def _get_json(self, path: str) -> Any:
        return get_json(self.url, path, self._headers, min(self.timeout_s, 30))

    def generate_for(self, key: str, token_ids: list[int], params: SamplingParams, on_token=None, cancelled=None,
                     *, healed_text: str = "", stop_when=None, priority: Priority = Priority.INTERACTIVE,
                     client: str = "") -> GenerationResult:
        ids, shown, native_heal = self._prompt(as_id_list(token_ids), healed_text)
        reply = Reply(len(ids), on_token, stop_when)
        stream = self._open(ids, params, native_heal)
        self.requests += 1
        reason = "stop" if shown and reply.show(shown) else self._read(stream, reply, cancelled)
        result = reply.finish(finish_reason(reason, cancelled), self.tokenizer)
        if params.json_schema is not None and result.finish_reason is not FinishReason.CANCELLED:
            check_schema(result.text, params.json_schema, self.url, complete=result.finish_reason is FinishReason.STOP)
        return result

    def _prompt(self, ids: list[int], healed_text: str) -> tuple[list[int], str, str]:
        """(the ids to send, the text the answer starts with, the healed text for a loopcoder server)."""
        if not ids:
            raise InvalidRequestError("empty prompt: at least one token is needed")
        if not healed_text:
            return ids, "", ""
        if self.native_healing:
            return ids, "", healed_text  # a loopcoder engine heals the token itself
        healed = self._heal(ids, healed_text)
        if healed is None:  # no way to constrain the first token: give the model its token back
            return ids + self.tokenizer.encode(healed_text, parse_special=False), "", ""
        # The likeliest token that starts with the healed text, chosen here.
        return ids + self.tokenizer.encode(healed, parse_special=False), healed[len(healed_text):], ""

    def _read(self, stream: Stream, reply: Reply, cancelled: CancelCheck | None) -> str | None:
        """Read the stream into `reply` until it ends, `stop_when` fires ("stop") or the
        caller cancels; the server's finish reason, None if it gave none."""
        done = threading.Event()
        if cancelled is not None:
            threading.Thread(target=self._watch, args=(stream, cancelled, done), daemon=True).start()
        reason = None
        try:
            for event in stream.events():
                delta, finish, usage = self._parse(event)
                reply.count(usage)
                if delta and reply.add(delta):
                    return "stop"
                reason = finish or reason
        except _BROKEN_READ as exc:
            if not (cancelled is not None and cancelled()):
                raise EngineUnavailableError(f"the remote backend's stream broke: {exc}") from None
        finally:
            done.set()
            stream.close()
        return reason

    def _open(self, ids: list[int], params: SamplingParams, healed_text: str = "") -> Stream:
        path, body = self._request(ids, params)
        if healed_text:
            body["healed_text"] = healed_text
        try:
            return Stream(self.url, path, body, self._headers, self.timeout_s)
        except LoopcoderError as exc:
            if self.text_prompts or "prompt" not in str(exc):
                raise
        # This server takes text prompts only (llama-cpp-python's): send the ids' text from now on.
        log.info("%s refuses token-id prompts: sending text", self.url)
        self.text_prompts = True
        path, body = self._request(ids, params)
        return Stream(self.url, path, body, self._headers, self.timeout_s)

    def prompt_text(self, ids: list[int]) -> str:
        """The prompt as text, for servers that tokenize it themselves (and add their own BOS)."""
        if ids and self.tokenizer.bos_id is not None and ids[0] == self.tokenizer.bos_id:
            ids = ids[1:]
        return self.tokenizer.decode(ids)

    @staticmethod
    def _watch(stream: Stream, cancelled: CancelCheck, done: threading.Event) -> None:
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
