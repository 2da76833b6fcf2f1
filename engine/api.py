"""The interface every front end types against, and its data, with no torch and no models.

`EngineAPI` is served in process by `engine.engine.Engine`, across the daemon's socket by
`engine.serving.client.DaemonClient`, and by someone else's HTTP server through
`engine.serving.remote`. Features, the LSP server, Jupyter and the CLI import this
module, never the concrete engine, so the thin clients start without torch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from enum import IntEnum
from typing import Any, Callable

from .errors import CancelledError, IncompleteOutputError
from .sampling import FinishReason, SamplingParams

JSON_MAX_NEW_TOKENS = 512  # generate_json's budget when the caller gives no params

TokenCallback = Callable[[int, str], None]  # (token id, text delta that is safe to show)
CancelCheck = Callable[[], bool]
StopPredicate = Callable[[str], bool]


class Priority(IntEnum):
    INTERACTIVE = 0  # inline completions: a user waits with the cursor still
    ACTION = 1  # reviews, explanations, hints, edits, scaffolding
    BACKGROUND = 2  # pre-warming a document nobody is waiting on yet


@dataclass(frozen=True)
class RemoteModelConfig:
    """The model facts front ends need, as a daemon or a remote server reports them."""

    model_type: str
    vocab_size: int
    max_position_embeddings: int
    name: str = ""
    device: str = ""
    dtype: str = ""


@dataclass
class Usage:
    prompt_tokens: int = 0
    cached_tokens: int = 0  # prompt tokens whose K/V were reused
    prefill_tokens: int = 0  # prompt tokens computed now
    generated_tokens: int = 0


@dataclass
class Timings:
    prefill_s: float = 0.0
    first_token_s: float = 0.0
    total_s: float = 0.0


@dataclass
class GenerationResult:
    token_ids: list[int]
    text: str
    finish_reason: FinishReason
    usage: Usage = field(default_factory=Usage)
    timings: Timings = field(default_factory=Timings)


def as_id_list(token_ids) -> list[int]:
    """Token ids from a list, any sequence, or a tensor or array of any shape (without importing torch)."""
    flatten = getattr(token_ids, "flatten", None)
    if flatten is not None and hasattr(token_ids, "tolist"):
        return flatten().tolist()
    return list(token_ids)


class EngineAPI:
    """What front ends call, in process (`Engine`) or across a socket (`engine.client`):
    `tokenizer`, `model_config.max_position_embeddings`, `generate_for`, `generate_json`,
    `prefill`, `close` and `stats`."""

    def generate_for(self, key: str, token_ids: list[int], params: SamplingParams, on_token=None, cancelled=None,
                     **kwargs: Any) -> GenerationResult:
        raise NotImplementedError

    def generate_json(self, key: str, token_ids: list[int], schema: dict, params: SamplingParams | None = None,
                      **kwargs: Any) -> tuple[Any, GenerationResult]:
        """Generate a JSON value valid under `schema` (it replaces `params.json_schema`); returns it parsed.

        `params` defaults to greedy with max_new_tokens=JSON_MAX_NEW_TOKENS; `kwargs` go to
        `generate_for`. Raises IncompleteOutputError when the token budget, a stop string or
        `stop_when` ended generation before the value was complete, CancelledError on cancel.
        """
        params = replace(params or SamplingParams(max_new_tokens=JSON_MAX_NEW_TOKENS), json_schema=schema)
        result = self.generate_for(key, token_ids, params, **kwargs)
        generated = f"after {len(result.token_ids)} generated tokens"
        if result.finish_reason is FinishReason.CANCELLED:
            raise CancelledError(f"JSON generation was cancelled {generated}")
        if result.finish_reason is FinishReason.LENGTH:
            raise IncompleteOutputError(f"JSON output incomplete: max_new_tokens={params.max_new_tokens} "
                                        f"was reached {generated}; allow more tokens")
        try:
            return json.loads(result.text), result
        except json.JSONDecodeError as exc:
            raise IncompleteOutputError(f"JSON output incomplete: a stop string or stop_when ended generation "
                                        f"{generated}") from exc
