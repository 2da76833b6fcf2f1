"""Server settings: command-line defaults, overridden by the client's initializationOptions (initialize).

Editor-neutral. Keys are camelCase, as LSP clients write them; docs/editors.md lists
them. Values are validated once, here, and a bad one is an `InvalidRequestError` that
names the key, so `initialize` fails with a message the user can act on.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from loopcoder.engine.errors import InvalidRequestError, TokenizerError
from loopcoder.engine.tokenizer import FimFormat

QUANTS = ("auto", "none", "int8", "int4", "fp8", "gguf")
BACKENDS = ("local", "inprocess", "openai", "tgi")
REMOTE_BACKENDS = ("openai", "tgi")
DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass(frozen=True)
class ServerSettings:
    model: str | None = None  # None: the embedded default model; for a remote backend, the served model's name
    device: str = "cpu"
    dtype: str = "auto"  # "auto": bfloat16 when quantized or on a GPU, else float32
    quant: str = "auto"
    backend: str = "local"  # "local": the shared engine daemon (started when none runs); "inprocess": this process
    socket: str | None = None  # the daemon's unix socket (None: $LOOPCODER_SOCKET or the runtime-dir default)
    threads: int = 0  # CPU threads for torch where the model runs (0: torch's choice)
    url: str | None = None  # a remote backend's base URL, e.g. http://gpu-box:8000
    api_key: str | None = None  # a remote backend's bearer token (else $LOOPCODER_API_KEY)
    tokenizer: str | None = None  # a remote backend's tokenizer: a model directory or .gguf (None: the default model's)
    max_tokens: int = 64  # most tokens an inline completion generates
    suffix_tokens: int = 256  # most tokens of text after the cursor put into the prompt
    context_tokens: int = 6144  # most tokens of text before the cursor put into the prompt
    repo_context_tokens: int = 1024  # most tokens of repository context before the document (0: off; docs/context.md)
    action_tokens: int = 512  # most tokens a code action (review, explain, hint, edit) generates
    temperature: float = 0.0
    prewarm: bool = True  # prefill a document's K/V on open and save
    cache: bool = True  # keep each document's K/V warm between requests; false recomputes every prompt
    # The fill-in-the-middle prompt for a model whose format is not read from its vocabulary,
    # e.g. "<PRE> {prefix} <SUF>{suffix} <MID>" (None: the model's own, docs/configuration.md).
    fim_template: str | None = None

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise InvalidRequestError(f"maxTokens must be at least 1, not {self.max_tokens}")
        if self.action_tokens < 1:
            raise InvalidRequestError(f"actionTokens must be at least 1, not {self.action_tokens}")
        if self.suffix_tokens < 0:
            raise InvalidRequestError(f"suffixTokens must be 0 or more, not {self.suffix_tokens}")
        if self.context_tokens < 1:
            raise InvalidRequestError(f"contextTokens must be at least 1, not {self.context_tokens}")
        if self.repo_context_tokens < 0:
            raise InvalidRequestError(f"repoContextTokens must be 0 (off) or more, not {self.repo_context_tokens}")
        if self.threads < 0:
            raise InvalidRequestError(f"threads must be 0 (torch's choice) or more, not {self.threads}")
        if self.temperature < 0:
            raise InvalidRequestError(f"temperature must be 0 (greedy) or more, not {self.temperature}")
        if self.quant not in QUANTS:
            raise InvalidRequestError(f"quant must be one of {', '.join(QUANTS)}, not {self.quant!r}")
        if self.backend not in BACKENDS:
            raise InvalidRequestError(f"backend must be one of {', '.join(BACKENDS)}, not {self.backend!r}")
        if self.backend in REMOTE_BACKENDS and not self.url:
            raise InvalidRequestError(f"backend {self.backend!r} needs url, e.g. http://127.0.0.1:8000")
        if self.dtype not in DTYPES:
            raise InvalidRequestError(f"dtype must be one of {', '.join(DTYPES)}, not {self.dtype!r}")
        if self.fim_template:
            try:
                FimFormat.from_template(self.fim_template)
            except TokenizerError as e:
                raise InvalidRequestError(str(e)) from None

    def updated(self, options: Any) -> "ServerSettings":
        """These settings with a client's initializationOptions (a JSON object, or None) applied."""
        if options is None:
            return self
        if not isinstance(options, dict):
            raise InvalidRequestError(f"initializationOptions must be a JSON object, not {type(options).__name__}")
        known = {_camel(f.name): f for f in fields(self)}
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise InvalidRequestError(f"unknown initializationOptions key(s): {', '.join(unknown)} (known: {', '.join(known)})")
        changes = {known[key].name: _checked(key, value, known[key].type) for key, value in options.items()}
        return replace(self, **changes)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _checked(key: str, value: Any, annotation: str) -> Any:
    """`value` if its JSON type fits the field, else an error naming the key."""
    if value is None and "None" in annotation:
        return None
    expected = {"int": (int,), "float": (int, float), "bool": (bool,)}.get(annotation.split(" ")[0], (str,))
    if isinstance(value, bool) and bool not in expected:
        expected = ()  # JSON true is not a number
    if not isinstance(value, expected):
        raise InvalidRequestError(f"initializationOptions.{key} must be {annotation}, not {value!r}")
    return float(value) if annotation == "float" else value
