"""The engine's tokenizer: HF `tokenizers` underneath, plus what the engine needs around it.

`Tokenizer` adds, on top of a `tokenizers.Tokenizer`:
- loading from a HF model directory (tokenizer.json, or a SentencePiece tokenizer.model
  converted at load; its files are read by `tokenizer_files`) or from GGUF metadata (see
  `tokenizer_convert`);
- end-of-sequence ids, special ids, the chat template (jinja2, sandboxed: `chat_template`)
  and the FIM format of the model family;
- `StreamDecoder`, which turns generated ids into text deltas without ever splitting a
  multi-byte character.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from tokenizers import Tokenizer as HFTokenizer

from . import tokenizer_convert
from .chat_template import CHATML_TEMPLATE, compile_chat_template, render_chat_template
from .errors import InvalidRequestError, TokenizerError
from .tokenizer_files import (convert_sentencepiece, eos_field, load_tokenizer_json, pick_template, read_json,
                              read_template, register_config_tokens, token_content)

# End-of-turn / end-of-text tokens of the families we serve. Any of them present as a
# special token also ends generation: an instruct model may emit <|im_end|> while its
# eos is <|endoftext|> (Qwen2.5), or the reverse (SmolLM2).
_END_TOKENS = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|eom_id|>", "<|end_of_text|>",
               "<|end|>", "<end_of_turn>", "<|EOT|>", "</s>")


GIL_FREE_ENCODE_CHARS = 1 << 16  # texts this long (about 50 ms of tokenizing) are encoded without the GIL


@dataclass(frozen=True)
class FimFormat:
    """Fill-in-the-middle markers of one model family, and their order.

    "psm": prefix marker, the code before the cursor, suffix marker, the code after it,
    middle marker (the model writes the middle). "spm": suffix marker, the code after,
    prefix marker, the code before, middle marker (Codestral; its middle marker is empty).
    The markers are single special tokens, or, for a user's `fimTemplate`, text that is
    tokenized with its special tokens (`template`).
    """

    name: str
    prefix: str
    suffix: str
    middle: str
    order: str = "psm"
    template: bool = False

    def build(self, prefix: str, suffix: str) -> str:
        # PSM keeps the stable part (the code before the cursor) first, so KV pages of the
        # prompt survive edits after the cursor.
        if self.order == "spm":
            return f"{self.suffix}{suffix}{self.prefix}{prefix}{self.middle}"
        return f"{self.prefix}{prefix}{self.suffix}{suffix}{self.middle}"

    @classmethod
    def from_template(cls, template: str) -> "FimFormat":
        """A `fimTemplate` such as "<PRE> {prefix} <SUF>{suffix} <MID>": the text around the
        two placeholders becomes the markers, and their order the format's."""
        if template.count("{prefix}") != 1 or template.count("{suffix}") != 1:
            raise TokenizerError(f"fimTemplate {template!r} needs {{prefix}} and {{suffix}} once each")
        first = "prefix" if template.index("{prefix}") < template.index("{suffix}") else "suffix"
        second = "suffix" if first == "prefix" else "prefix"
        lead, rest = template.split("{" + first + "}")
        between, tail = rest.split("{" + second + "}")
        if first == "prefix":
            return cls("template", lead, between, tail, "psm", True)
        return cls("template", between, lead, tail, "spm", True)


FIM_FORMATS = (
    FimFormat("qwen", "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"),  # Qwen2.5-Coder, Qwen3, IQuest
    FimFormat("starcoder", "<fim_prefix>", "<fim_suffix>", "<fim_middle>"),  # StarCoder 1/2
    FimFormat("codellama", "\u2581<PRE>", "\u2581<SUF>", "\u2581<MID>"),
    FimFormat("deepseek", "<\uff5cfim\u2581begin\uff5c>", "<\uff5cfim\u2581hole\uff5c>", "<\uff5cfim\u2581end\uff5c>"),
    FimFormat("codestral", "[PREFIX]", "[SUFFIX]", "", "spm"),  # Mistral's v3 tokenizers: <s>[SUFFIX]suffix[PREFIX]prefix
)


class Tokenizer:
    """A `tokenizers.Tokenizer` with the model's special tokens, chat template and FIM format."""

    def __init__(self, hf: HFTokenizer, *, bos_token: str | None = None, eos_token: str | None = None,
                 extra_eos_ids: Iterable[int] = (), chat_template: str | None = None) -> None:
        self.hf = hf
        self._plain: HFTokenizer | None = None  # built on first use by encode(parse_special=False)
        self.bos_token = bos_token
        self.bos_id = hf.token_to_id(bos_token) if bos_token else None
        self.special_ids = frozenset(i for i, t in hf.get_added_tokens_decoder().items() if t.special)
        self.eos_ids = self._collect_eos_ids(eos_token, extra_eos_ids)
        self.eos_token = eos_token if eos_token else (self.id_to_token(self.eos_ids[0]) if self.eos_ids else None)
        self.fim_format = next((f for f in FIM_FORMATS if self._has_tokens(*filter(None, (f.prefix, f.suffix, f.middle)))),
                               None)
        self._template_source = chat_template
        if chat_template is None and self.token_to_id("<|im_start|>") is not None:
            chat_template = CHATML_TEMPLATE  # ChatML is the usual format of models with <|im_start|>
        self._template = compile_chat_template(chat_template) if chat_template else None

    # --- constructors ---------------------------------------------------------------

    @classmethod
    def from_pretrained_dir(cls, path: str | Path, *, extra_eos_ids: Iterable[int] = ()) -> "Tokenizer":
        """Load tokenizer.json (or convert tokenizer.model) plus tokenizer_config.json.

        End-of-sequence ids also come from generation_config.json and config.json when
        the directory has them.
        """
        path = Path(path)
        if not path.is_dir():
            raise TokenizerError(f"tokenizer directory {path} does not exist")
        config = read_json(path / "tokenizer_config.json")
        # The sentencepiece model names its own <s>/</s>; tokenizer_config.json may override.
        default_bos = default_eos = None
        if (path / "tokenizer.json").is_file():
            hf = load_tokenizer_json(path / "tokenizer.json")
        elif (path / "tokenizer.model").is_file():
            hf, default_bos, default_eos = convert_sentencepiece(path / "tokenizer.model", config)
        else:
            raise TokenizerError(f"{path} has neither tokenizer.json nor tokenizer.model")
        register_config_tokens(hf, config.get("added_tokens_decoder") or {})
        model_eos = [*eos_field(read_json(path / "generation_config.json")),
                     *eos_field(read_json(path / "config.json"))]
        template = read_template(path / "chat_template.jinja") or pick_template(config.get("chat_template"))
        return cls(hf, bos_token=token_content(config.get("bos_token")) or default_bos,
                   eos_token=token_content(config.get("eos_token")) or default_eos,
                   extra_eos_ids=[*model_eos, *extra_eos_ids], chat_template=template)

    @classmethod
    def from_gguf_metadata(cls, meta: Mapping[str, Any]) -> "Tokenizer":
        """Rebuild the tokenizer from a GGUF file's key/value fields (plain Python values)."""
        hf = tokenizer_convert.build_gguf(meta)
        tokens = meta["tokenizer.ggml.tokens"]
        bos_id = tokenizer_convert.gguf_token_id(meta, "tokenizer.ggml.bos_token_id")
        eos_id = tokenizer_convert.gguf_token_id(meta, "tokenizer.ggml.eos_token_id")
        # llama.cpp writes these for Llama 3 (eot, eom) when they differ from eos.
        extra = [tokenizer_convert.gguf_token_id(meta, f"tokenizer.ggml.{k}_token_id") for k in ("eot", "eom")]
        return cls(hf, bos_token=str(tokens[bos_id]) if bos_id is not None else None,
                   eos_token=str(tokens[eos_id]) if eos_id is not None else None,
                   extra_eos_ids=[i for i in extra if i is not None],
                   chat_template=meta.get("tokenizer.chat_template"))

    def to_state(self) -> dict[str, Any]:
        """Plain values that rebuild this tokenizer elsewhere (the daemon sends them to clients)."""
        return {"tokenizer_json": self.hf.to_str(), "bos_token": self.bos_token, "eos_token": self.eos_token,
                "eos_ids": list(self.eos_ids), "chat_template": self._template_source}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> "Tokenizer":
        try:
            hf = HFTokenizer.from_str(state["tokenizer_json"])
        except Exception as exc:
            raise TokenizerError(f"the engine sent a tokenizer that does not load: {exc}") from None
        return cls(hf, bos_token=state.get("bos_token"), eos_token=state.get("eos_token"),
                   extra_eos_ids=state.get("eos_ids") or (), chat_template=state.get("chat_template"))

    # --- vocabulary -----------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        """Number of token ids, added tokens included (the model's embedding may be larger)."""
        return self.hf.get_vocab_size(with_added_tokens=True)

    def token_to_id(self, token: str) -> int | None:
        return self.hf.token_to_id(token)

    def id_to_token(self, token_id: int) -> str | None:
        return self.hf.id_to_token(token_id)

    # --- encode / decode ------------------------------------------------------------

    def encode(self, text: str, *, add_special_tokens: bool = False, parse_special: bool = True) -> list[int]:
        """Token ids of `text`.

        parse_special: special-token strings in it ("<|im_start|>") become their ids; pass
        False for document text, so a file that mentions a control token cannot inject it.
        add_special_tokens adds what the model's post-processor adds (BOS for Llama).
        """
        if not isinstance(text, str):
            raise TypeError(f"encode() takes a str, not {type(text).__name__}")
        hf = self.hf if parse_special else self._plain_text_tokenizer()
        try:
            if len(text) < GIL_FREE_ENCODE_CHARS:
                return hf.encode(text, add_special_tokens=add_special_tokens).ids
            # encode() holds the GIL throughout (a second a MiB); encode_batch lets go of it, so
            # the other threads (a server's event loop) run while a long text is tokenized.
            return hf.encode_batch([text], add_special_tokens=add_special_tokens)[0].ids
        except Exception as exc:  # tokenizers raises plain Exception subclasses
            if not text.isascii() and _has_lone_surrogate(text):
                raise TokenizerError("cannot encode text with a lone UTF-16 surrogate (not valid Unicode)") from exc
            raise TokenizerError(f"encoding failed: {exc}") from exc

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        ids = [int(i) for i in ids]  # numpy and torch integers too
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise InvalidRequestError(f"token id {bad[0]} is outside the vocab of {self.vocab_size} tokens")
        return self.hf.decode(ids, skip_special_tokens=skip_special_tokens)

    def stream_decoder(self, prompt_ids: Sequence[int] = (), *, skip_special_tokens: bool = False) -> "StreamDecoder":
        return StreamDecoder(self, prompt_ids=prompt_ids, skip_special_tokens=skip_special_tokens)

    # --- chat and FIM ---------------------------------------------------------------

    @property
    def chat_template(self) -> str | None:
        """The model's own template; None when `apply_chat_template` would use a fallback."""
        return self._template_source

    def apply_chat_template(self, messages: list[dict], add_generation_prompt: bool = True, **kwargs: Any) -> str:
        """Render a conversation to prompt text; extra keyword arguments reach the template."""
        if self._template is None:
            raise TokenizerError("this model has no chat template and no <|im_start|> token for ChatML")
        return render_chat_template(self._template, messages=messages, add_generation_prompt=add_generation_prompt,
                                    bos_token=self.bos_token or "", eos_token=self.eos_token or "", **kwargs)

    def build_fim(self, prefix: str, suffix: str) -> str | None:
        """The fill-in-the-middle prompt text, or None when the model knows no FIM format."""
        return self.fim_format.build(prefix, suffix) if self.fim_format else None

    def use_fim_template(self, template: str | None) -> None:
        """Use a `fimTemplate` ("<PRE> {prefix} <SUF>{suffix} <MID>") instead of the format
        read from the vocabulary; None or "" goes back to that one."""
        detected = next((f for f in FIM_FORMATS if self._has_tokens(*filter(None, (f.prefix, f.suffix, f.middle)))), None)
        self.fim_format = FimFormat.from_template(template) if template else detected

    def encode_fim(self, prefix: str, suffix: str) -> list[int]:
        """FIM ids with the document text encoded as plain text; the BOS only where the model uses one."""
        return self.fim_ids(self.encode(prefix, parse_special=False), self.encode(suffix, parse_special=False))

    def fim_ids(self, prefix_ids: Sequence[int], suffix_ids: Sequence[int], before: Sequence[int] = ()) -> list[int]:
        """FIM ids around already encoded prefix and suffix text, in the format's order; `before`
        (repository context) goes ahead of the first marker, after any BOS."""
        fim = self._require_fim()
        pre, suf, mid = self._marker(fim.prefix), self._marker(fim.suffix), self._marker(fim.middle)
        if fim.order == "spm":
            return [*self._fim_bos(), *before, *suf, *suffix_ids, *pre, *prefix_ids, *mid]
        return [*self._fim_bos(), *before, *pre, *prefix_ids, *suf, *suffix_ids, *mid]

    def fim_head_ids(self, prefix_ids: Sequence[int], before: Sequence[int] = ()) -> list[int]:
        """The start every FIM prompt of a document shares, given the text before the cursor:
        what pre-warming prefills. In PSM order the code before the cursor; in SPM only the
        first marker (the code after the cursor comes first, and changes)."""
        fim = self._require_fim()
        if fim.order == "spm":
            return [*self._fim_bos(), *before, *self._marker(fim.suffix)]
        return [*self._fim_bos(), *before, *self._marker(fim.prefix), *prefix_ids]

    def _require_fim(self) -> FimFormat:
        if self.fim_format is None:
            raise TokenizerError("this tokenizer has no fill-in-the-middle tokens")
        return self.fim_format

    def _fim_bos(self) -> list[int]:
        return [self.bos_id] if self.bos_id is not None and self.encode("", add_special_tokens=True) else []

    def _marker(self, text: str) -> list[int]:
        """A marker's ids: its special token, or a template's text with its special tokens parsed."""
        if not text:
            return []
        if self.fim_format is not None and self.fim_format.template:
            return self.encode(text, parse_special=True)
        return [self.token_to_id(text)]

    def _plain_text_tokenizer(self) -> HFTokenizer:
        if self._plain is None:
            plain = HFTokenizer.from_str(self.hf.to_str())
            plain.encode_special_tokens = True
            self._plain = plain
        return self._plain

    # --- helpers --------------------------------------------------------------------

    def _has_tokens(self, *tokens: str) -> bool:
        return all(self.token_to_id(t) is not None for t in tokens)

    def _collect_eos_ids(self, eos_token: str | None, extra: Iterable[int]) -> tuple[int, ...]:
        """The configured eos first, then the model config's ids, then known end tokens
        that are special tokens of this vocab; no duplicates."""
        configured = [self.token_to_id(eos_token) if eos_token else None, *extra]
        named = [i for i in map(self.token_to_id, _END_TOKENS) if i in self.special_ids]
        eos: list[int] = []
        for token_id in (*configured, *named):
            if token_id is None or token_id in eos:
                continue
            if not 0 <= token_id < self.vocab_size:
                raise TokenizerError(f"eos token id {token_id} is outside the vocab of {self.vocab_size} tokens")
            eos.append(int(token_id))
        return tuple(eos)


class StreamDecoder:
    """Turns generated ids, one at a time, into text deltas.

    Decodes a window of ids and emits the text past what was already emitted, but only
    once it no longer ends in U+FFFD: a character whose UTF-8 bytes span several
    byte-level tokens is emitted whole, when its last byte arrives. After each delta the
    window restarts at the ids behind that delta, so a step costs O(window), not O(text).

    Joined deltas (plus `flush()`) equal decode(prompt_ids + ids) minus decode(prompt_ids).
    The prompt's last ids seed the window so that a leading space of the first generated
    token survives SentencePiece decoders, which strip one at the start of text.
    """

    _PROMPT_CONTEXT = 8
    _MAX_CHAR_IDS = 4  # a character has at most 4 UTF-8 bytes, so it starts within 4 ids

    def __init__(self, tokenizer: Tokenizer, *, prompt_ids: Sequence[int] = (), skip_special_tokens: bool = False):
        self._tokenizer = tokenizer
        self._skip_special = skip_special_tokens
        context = list(prompt_ids)[-self._PROMPT_CONTEXT:]
        # Drop leading ids that continue a character begun before the context.
        first = next((i for i in range(min(self._MAX_CHAR_IDS, len(context)))
                      if not self._decode(context[i:]).startswith("\ufffd")), 0)
        self._ids = context[first:]
        # A prompt cut inside a character leaves that character pending: its bytes count as
        # not emitted, and the next window starts at the id where the character begins.
        boundary = len(self._ids)
        lowest = max(0, boundary - self._MAX_CHAR_IDS + 1)
        while boundary > lowest and self._decode(self._ids[:boundary]).endswith("\ufffd"):
            boundary -= 1
        self._unemitted_from = boundary  # the next window starts here, at a character boundary
        self._emitted_chars = len(self._decode(self._ids).rstrip("\ufffd"))

    def push(self, token_id: int) -> str:
        """Add one generated id; return the newly completed text ('' while incomplete)."""
        self._ids.append(token_id)
        return self._advance(final=False)

    def flush(self) -> str:
        """Return whatever is still held back (an incomplete character decodes as U+FFFD)."""
        return self._advance(final=True)

    def _advance(self, *, final: bool) -> str:
        text = self._decode(self._ids)
        if len(text) <= self._emitted_chars or (text.endswith("\ufffd") and not final):
            return ""
        delta = text[self._emitted_chars:]
        self._ids = self._ids[self._unemitted_from:]
        self._unemitted_from = len(self._ids)
        self._emitted_chars = len(self._decode(self._ids))
        return delta

    def _decode(self, ids: list[int]) -> str:
        # Ids past the tokenizer's vocab (embedding rows padded beyond it, which random or
        # badly trained weights can sample) have no text; everything else decodes as usual.
        size = self._tokenizer.vocab_size
        ids = [i for i in ids if 0 <= i < size]
        return self._tokenizer.decode(ids, skip_special_tokens=self._skip_special) if ids else ""


def _has_lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def split_last_token(tokenizer: Tokenizer, ids: list[int]) -> tuple[list[int], str]:
    """(ids without the last token, that token's text), or (ids, "") when it can't be healed.

    Token healing's front-end half (engine/token_healing.py): the caller sends the shorter
    prompt with the dropped text as `healed_text`."""
    if len(ids) < 2 or ids[-1] in tokenizer.special_ids:
        return ids, ""
    text = tokenizer.decode(ids[-1:])
    if not text or "\ufffd" in text:  # part of a multi-byte character: leave it alone
        return ids, ""
    return ids[:-1], text
