"""The text-generation-inference backend: `/generate_stream`, with text prompts."""

from __future__ import annotations

from typing import Any

from ...errors import EngineUnavailableError, LoopcoderError
from ...sampling import SamplingParams
from .base import RemoteBackend


class TGIBackend(RemoteBackend):
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
