"""Per-request decoding: sampling parameters, token sampling and stop detection.

- `params`: the plain data front ends share (`SamplingParams`, `FinishReason`,
  `DedentStop`, `StopChecker`), with no torch, so the thin clients import it cheaply;
- `sampler`: `Sampler`, which owns one request's seeded random state, and `sample_batch`;
- `grammar`: constrained decoding (JSON schemas), its schema check in `schema`.

This package's namespace holds only the torch-free names of `params`.
"""

from .params import (
    GREEDY_BELOW,
    MAX_NEW_TOKENS_CAP,
    MAX_STOP_STRING_LEN,
    MAX_STOP_STRINGS,
    DedentStop,
    FinishReason,
    SamplingParams,
    StopChecker,
    watch_stop,
)

__all__ = [
    "GREEDY_BELOW",
    "MAX_NEW_TOKENS_CAP",
    "MAX_STOP_STRING_LEN",
    "MAX_STOP_STRINGS",
    "DedentStop",
    "FinishReason",
    "SamplingParams",
    "StopChecker",
    "watch_stop",
]
