"""Sampling's plain data, with no torch: `SamplingParams` (validated on construction),
`FinishReason`, `DedentStop` and `StopChecker` (stop strings over streamed text).

Front ends and the thin clients import these; the torch side, `Sampler` and
`sample_batch`, lives in `sampler.py`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from ..errors import InvalidRequestError, shown
from .schema import json_schema_grammar

MAX_NEW_TOKENS_CAP = 1 << 20
GREEDY_BELOW = 1e-5  # temperatures under this sample greedily (as vLLM does)
MAX_STOP_STRINGS = 16
MAX_STOP_STRING_LEN = 1024  # bounds the per-token cost of the hold-back scan
_SEED_RANGE = range(0, 1 << 64)  # what torch.Generator.manual_seed accepts unsigned


class FinishReason(StrEnum):
    STOP = "stop"  # eos, stop token or stop string
    LENGTH = "length"
    CANCELLED = "cancelled"


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _reject(field: str, value: object, why: str) -> None:
    raise InvalidRequestError(f"{field}={shown(value)} is invalid: {why}")


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


@dataclass(frozen=True)
class DedentStop:
    """Stop once a generated line, after the first, starts left of column `indent`: the
    block at the cursor is over. `line_start` is the text of the cursor's line before the
    generated text. A plain value, so it crosses the daemon's wire (unlike a callable)."""

    indent: int
    line_start: str = ""

    def __call__(self, generated: str) -> bool:
        return self.watch().feed(generated)

    def watch(self) -> "_DedentWatch":
        return _DedentWatch(self)

    def ends_block(self, line: str) -> bool:
        return bool(line.strip()) and len(line) - len(line.lstrip(" \t")) < self.indent


class _DedentWatch:
    """A DedentStop over streamed text: each delta is read once, and only the line it is
    still growing is kept (the last line may still be growing its indentation: only whole
    lines count)."""

    def __init__(self, stop: DedentStop) -> None:
        self._stop = stop
        self._line = stop.line_start
        self._whole_lines = 0

    def feed(self, delta: str) -> bool:
        *ended, growing = delta.split("\n")
        for piece in ended:
            line, self._line = self._line + piece, ""
            self._whole_lines += 1
            if self._whole_lines > 1 and self._stop.ends_block(line):
                return True
        self._line += growing
        return False


class _WholeTextWatch:
    """Any other stop predicate: it is asked about the whole text so far, after each delta."""

    def __init__(self, predicate) -> None:
        self._predicate = predicate
        self._text = ""

    def feed(self, delta: str) -> bool:
        self._text += delta
        return bool(self._predicate(self._text))


def watch_stop(predicate) -> "_DedentWatch | _WholeTextWatch":
    """An object whose `feed(delta)` says whether `predicate` (a StopPredicate: the text
    generated so far -> stop?) has ended generation; a DedentStop reads each delta once."""
    return predicate.watch() if isinstance(predicate, DedentStop) else _WholeTextWatch(predicate)


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
