"""Per-request decoding: sampling parameters, token sampling and stop detection.

A `Sampler` owns one request's random state, so a seeded request yields the same
tokens whatever else shares its batch. A `StopChecker` decides when a request ends
and keeps any part of a stop string from reaching the client. `grammar` holds
constrained decoding (JSON schemas).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

import torch

from ..errors import InvalidRequestError
from .grammar import json_schema_grammar

MAX_NEW_TOKENS_CAP = 1 << 20
GREEDY_BELOW = 1e-5  # temperatures under this sample greedily (as vLLM does)
MAX_STOP_STRINGS = 16
MAX_STOP_STRING_LEN = 1024  # bounds the per-token cost of the hold-back scan
_SEED_RANGE = range(0, 1 << 64)  # what torch.Generator.manual_seed accepts unsigned
# float32 softmax sums carry ~1e-7 error; without slack, top_p=0.85 over probabilities
# 0.6 and 0.25 keeps a third token, because their float32 mass lands just below 0.85.
_TOP_P_SLACK = 1e-6


class FinishReason(StrEnum):
    STOP = "stop"  # eos, stop token or stop string
    LENGTH = "length"
    CANCELLED = "cancelled"


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _reject(field: str, value: object, why: str) -> None:
    raise InvalidRequestError(f"{field}={value!r} is invalid: {why}")


@dataclass(frozen=True)
class SamplingParams:
    max_new_tokens: int = 16
    temperature: float = 0.0  # 0 means greedy
    top_k: int = 0  # 0 means no top-k filter
    top_p: float = 1.0
    seed: int | None = None  # None draws a fresh seed per request
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    ignore_eos: bool = False
    # Every token is masked to the schema (see grammar.py). Left out of the hash: a dict has none.
    json_schema: dict | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        # JSON front ends hand over lists, and a lone string is a common shorthand.
        stop = (self.stop,) if isinstance(self.stop, str) else self.stop
        if isinstance(stop, list):
            stop = tuple(stop)
        object.__setattr__(self, "stop", stop)
        if isinstance(self.stop_token_ids, list):
            object.__setattr__(self, "stop_token_ids", tuple(self.stop_token_ids))
        self._validate_numbers()
        self._validate_stops()
        if self.json_schema is not None:
            json_schema_grammar(self.json_schema)  # raises InvalidRequestError with llguidance's reason

    def _validate_numbers(self) -> None:
        n = self.max_new_tokens
        if not _is_int(n) or not 1 <= n <= MAX_NEW_TOKENS_CAP:
            _reject("max_new_tokens", n, f"must be an integer in [1, {MAX_NEW_TOKENS_CAP}]")
        t = self.temperature
        if not _is_real(t) or not math.isfinite(t) or t < 0:
            _reject("temperature", t, "must be a finite number >= 0 (0 means greedy)")
        if not _is_int(self.top_k) or self.top_k < 0:
            _reject("top_k", self.top_k, "must be an integer >= 0 (0 disables top-k)")
        p = self.top_p
        if not _is_real(p) or not 0 < p <= 1:
            _reject("top_p", p, "must be a number in (0, 1]")
        if self.seed is not None and (not _is_int(self.seed) or self.seed not in _SEED_RANGE):
            _reject("seed", self.seed, "must be null or an integer in [0, 2**64)")
        if not isinstance(self.ignore_eos, bool):
            _reject("ignore_eos", self.ignore_eos, "must be a boolean")

    def _validate_stops(self) -> None:
        if not isinstance(self.stop, tuple):
            _reject("stop", self.stop, "must be a string or a list of strings")
        if len(self.stop) > MAX_STOP_STRINGS:
            _reject("stop", self.stop, f"at most {MAX_STOP_STRINGS} stop strings are allowed")
        for s in self.stop:
            if not isinstance(s, str) or not 1 <= len(s) <= MAX_STOP_STRING_LEN:
                why = f"each stop string must be non-empty and at most {MAX_STOP_STRING_LEN} characters"
                _reject("stop", s, why)
        if not isinstance(self.stop_token_ids, tuple):
            _reject("stop_token_ids", self.stop_token_ids, "must be a list of token ids")
        for token_id in self.stop_token_ids:
            if not _is_int(token_id) or token_id < 0:
                _reject("stop_token_ids", token_id, "each stop token id must be an integer >= 0")

    @property
    def is_greedy(self) -> bool:
        # top_k=1 keeps only the argmax anyway; argmax is cheaper and ties break stably.
        # A temperature this small is greedy in effect, and in float32 it would divide by 0.
        return self.temperature < GREEDY_BELOW or self.top_k == 1


class Sampler:
    """Turns one request's logits into tokens, with its own seeded random stream."""

    def __init__(self, params: SamplingParams):
        self.params = params
        self.seed = params.seed if params.seed is not None else int.from_bytes(os.urandom(8), "little")
        # A CPU generator keeps seeded output independent of the device the logits came from.
        self.generator = torch.Generator(device="cpu").manual_seed(self.seed)

    def sample(self, logits: torch.Tensor) -> int:
        if self.params.is_greedy:
            return int(logits.argmax())  # first maximum wins, so ties go to the lowest id
        probs, token_ids = self._candidates(logits.detach().float().cpu())
        choice = torch.multinomial(probs, 1, generator=self.generator)
        return int(token_ids[choice])

    def _candidates(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Probabilities of the tokens that survive top-k and top-p, with their ids."""
        p = self.params
        # Shifting by the max first keeps tiny temperatures from overflowing to inf - inf.
        scaled = (logits - logits.max()) / p.temperature
        if p.top_k == 0 and p.top_p >= 1:
            return torch.softmax(scaled, dim=-1), torch.arange(scaled.numel())
        if p.top_k:
            # Select on the raw logits: shifting by the max can round two of them together.
            _, token_ids = torch.topk(logits, min(p.top_k, logits.numel()))
            values = scaled[token_ids]
        else:
            values, token_ids = torch.sort(scaled, descending=True, stable=True)
        probs = torch.softmax(values, dim=-1)
        if p.top_p < 1:
            keep = _nucleus_size(probs, p.top_p)
            probs, token_ids = probs[:keep], token_ids[:keep]
        return probs, token_ids


def _nucleus_size(sorted_probs: torch.Tensor, top_p: float) -> int:
    """Length of the shortest prefix whose probabilities sum to at least top_p."""
    mass_before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs
    return max(1, int((mass_before < top_p - _TOP_P_SLACK).sum()))


def sample_batch(logits: torch.Tensor, samplers: list[Sampler]) -> list[int]:
    """Sample one token per row; greedy rows share a single argmax."""
    if logits.dim() != 2 or logits.shape[0] != len(samplers):
        raise ValueError(f"logits of shape {tuple(logits.shape)} do not match {len(samplers)} samplers")
    tokens = [0] * len(samplers)
    greedy_rows = [i for i, s in enumerate(samplers) if s.params.is_greedy]
    if greedy_rows:
        picks = logits[greedy_rows].argmax(dim=-1).tolist()
        for row, token in zip(greedy_rows, picks):
            tokens[row] = token
    for row, sampler in enumerate(samplers):
        if not sampler.params.is_greedy:
            tokens[row] = sampler.sample(logits[row])
    return tokens


@dataclass(frozen=True)
class DedentStop:
    """Stop once a generated line, after the first, starts left of column `indent`: the
    block at the cursor is over. `line_start` is the text of the cursor's line before the
    generated text. A plain value, so it crosses the daemon's wire (unlike a callable)."""

    indent: int
    line_start: str = ""

    def __call__(self, generated: str) -> bool:
        lines = (self.line_start + generated).split("\n")
        # The last line may still be growing its indentation: only whole lines count.
        return any(line.strip() and len(line) - len(line.lstrip(" \t")) < self.indent for line in lines[1:-1])


class StopChecker:
    """Detects the end of one request, by token id or by stop string in streamed text.

    When stop strings overlap, the one that completes first in the text wins (on a tie,
    the longer one), since generation has to end the moment any of them completes.
    """

    def __init__(self, params: SamplingParams, eos_token_ids: Iterable[int]):
        eos = set() if params.ignore_eos else set(eos_token_ids)
        self._stop_ids = frozenset(eos | set(params.stop_token_ids))
        self._stops = params.stop
        self._first_chars = frozenset(s[0] for s in self._stops)
        self._max_held = max((len(s) for s in self._stops), default=1) - 1
        self._held = ""  # a suffix of the text that may begin a stop string
        self.stopped = False

    def check_token(self, token_id: int) -> bool:
        return token_id in self._stop_ids

    def feed(self, text_delta: str) -> tuple[str, bool]:
        """Return the text safe to emit now and whether a stop string was hit."""
        if self.stopped:
            return "", True
        # Any match not yet seen starts inside the held suffix, so this window suffices.
        window = self._held + text_delta
        cut = self._first_match_start(window)
        if cut is not None:
            self.stopped, self._held = True, ""
            return window[:cut], True
        hold = self._partial_match_len(window)
        self._held = window[len(window) - hold:] if hold else ""
        return window[: len(window) - hold], False

    def flush(self) -> str:
        """Return the held-back text once generation ends without a stop string."""
        held, self._held = self._held, ""
        return held

    def _first_match_start(self, window: str) -> int | None:
        matches = []
        for s in self._stops:
            start = window.find(s)
            if start >= 0:
                matches.append((start + len(s), start))
        return min(matches)[1] if matches else None

    def _partial_match_len(self, window: str) -> int:
        """Length of the longest suffix of window that is a proper prefix of a stop string."""
        for length in range(min(len(window), self._max_held), 0, -1):
            tail = window[-length:]
            if tail[0] in self._first_chars and any(s.startswith(tail) for s in self._stops):
                return length
        return 0
