"""One error hierarchy for loopcoder.

Every boundary (CLI, LSP, HTTP, RPC) maps `LoopcoderError` to its own error form and
logs it there. Nothing else in the code base raises bare exceptions for user-facing
failures: misuse of an internal API may still raise ValueError/TypeError.
"""

from typing import Any

SHOWN_CHARS = 60  # of a client's value, repeated in an error message


def shown(value: Any, limit: int = SHOWN_CHARS) -> str:
    """`repr(value)` for an error message, cut to about `limit` characters with the full size
    said: an error never repeats the megabytes a client sent."""
    text = repr(value)
    if len(text) <= limit:
        return text
    size = len(value) if isinstance(value, (str, bytes, list, dict)) else len(text)
    return f"{text[:limit]}… ({size} characters)"


class LoopcoderError(Exception):
    """Base class: a failure a user can act on, with a message that says how."""


class ModelLoadError(LoopcoderError):
    """A model directory or file cannot be read: missing shard, bad shape, truncated GGUF."""


class UnsupportedModelError(ModelLoadError):
    """The checkpoint names an architecture or feature loopcoder does not implement."""


class TokenizerError(LoopcoderError):
    """No usable tokenizer could be built, or encoding failed."""


class InvalidRequestError(LoopcoderError):
    """A request is malformed: empty prompt, token id out of range, bad parameter."""


class KVCacheOutOfMemoryError(LoopcoderError):
    """The KV block pool cannot hold the request, even after evicting every unpinned block."""


class CancelledError(LoopcoderError):
    """A request was cancelled, by the client or by a newer request for the same document."""


class IncompleteOutputError(LoopcoderError):
    """Generation ended (token budget, stop string) before the structured output was complete."""


class ConstrainedDecodingError(LoopcoderError):
    """The grammar of a constrained request failed mid-generation: it rejected a token, or allows none."""


class KernelSettingError(LoopcoderError):
    """LOOPCODER_KERNELS forced a kernel that cannot run here, or holds an unknown value
    (kernels/dispatch.py's KernelUnavailableError, as the engine reports it)."""


class InternalError(LoopcoderError):
    """A bug in loopcoder: the request fails with this rather than hanging."""


class EngineBusyError(LoopcoderError):
    """Another engine is starting or running on this socket (it holds the socket's lock)."""

    exit_code = 3  # `loopcoder engine`'s exit status: autostarting clients wait for the other engine


class EngineUnavailableError(LoopcoderError):
    """The engine daemon cannot be reached, or the connection broke while a request was in flight."""


class OutputPolicyError(LoopcoderError):
    """The model's answer broke the feature's policy (a hint that hands over code) on every try."""
