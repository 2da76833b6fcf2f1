"""The OpenAI-compatible `/v1/completions` backend: vLLM, SGLang, llama.cpp's server, and
another loopcoder engine's HTTP API (which heals tokens itself)."""

from __future__ import annotations

import json
import logging
from typing import Any

from ...errors import EngineUnavailableError, LoopcoderError
from ...sampling import SamplingParams
from ...tokenizer import Tokenizer
from .base import RemoteBackend
from .stream import Stream

log = logging.getLogger(__name__)


class OpenAIBackend(RemoteBackend):
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
                stream = Stream(self.url, "/v1/completions", {**body, "stream": False}, self._headers, self.timeout_s)
            except LoopcoderError as exc:
                if self.text_prompts or "prompt" not in str(exc):
                    raise
                self.text_prompts = True  # as in _open: this server takes text prompts only
                body["prompt"] = self.prompt_text(ids)
                stream = Stream(self.url, "/v1/completions", {**body, "stream": False}, self._headers, self.timeout_s)
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
