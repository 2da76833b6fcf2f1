"""Rebuild `tokenizers.Tokenizer` objects from SentencePiece models and GGUF metadata.

Two sources carry no tokenizer.json:

- a SentencePiece `tokenizer.model` (IQuest-Coder and older Llama checkpoints ship one);
- the `tokenizer.ggml.*` fields of a GGUF file: byte-level BPE ("gpt2") or
  SentencePiece pieces with scores ("llama").

SentencePiece pieces and GGUF token types share one numbering (1 normal, 2 unknown,
3 control, 4 user-defined, 5 unused, 6 byte), so both SentencePiece paths go through
`SentencePieceSpec` and `build_sentencepiece`.

Each text segment between added tokens is encoded as sentencepiece alone would encode it,
dummy prefix included: what IQuest's own (sentencepiece-backed) IQuestCoderTokenizer and
llama.cpp do. HF's `legacy: false` mode (a prefix only at the start of the input) is not
reproduced; tokenizer_config's `legacy` and `add_prefix_space` are ignored.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from tokenizers import AddedToken, Regex, decoders, models, normalizers, pre_tokenizers, processors
from tokenizers import Tokenizer as HFTokenizer

from .errors import TokenizerError

log = logging.getLogger(__name__)

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
SPIECE_SPACE = "\u2581"  # "▁": how SentencePiece writes a space inside pieces

# Pieces the lattice must never pick from text in a Unigram model (SentencePiece keeps
# them out of its trie). Far below any real log-probability, but finite so Viterbi sums work.
_UNREACHABLE_SCORE = -1e6

_LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# Qwen2 is Llama 3's pattern with single digits (`\p{N}`, not `\p{N}{1,3}`), as in
# Qwen2/Qwen2.5(-Coder) tokenizer.json and llama.cpp's LLAMA_VOCAB_PRE_TYPE_QWEN2.
_QWEN2_PATTERN = _LLAMA3_PATTERN.replace(r"\p{N}{1,3}", r"\p{N}")

# tokenizer.ggml.pre -> split regex. None: GPT-2's regex, which ByteLevel(use_regex=True)
# has built in ('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+).
_PRE_PATTERNS: dict[str, str | None] = {
    "default": None, "gpt2": None, "gpt-2": None,
    **dict.fromkeys(["llama3", "llama-v3", "llama-bpe", "falcon3", "smaug-bpe", "dbrx"], _LLAMA3_PATTERN),
    **dict.fromkeys(["qwen2", "deepseek-r1-qwen"], _QWEN2_PATTERN),
}
# These split every digit off first and then apply GPT-2's regex.
_DIGIT_SPLIT_PRE = {"smollm", "starcoder", "refact"}
# llama.cpp looks whole words up in the vocab before merging for Llama 3 (HF: ignore_merges).
_IGNORE_MERGES_PRE = {"llama3", "llama-v3", "llama-bpe"}


@dataclass(frozen=True)
class SentencePieceSpec:
    """Everything needed to rebuild a SentencePiece tokenizer, whatever it was read from."""

    pieces: Sequence[str]
    scores: Sequence[float]
    types: Sequence[int]
    algorithm: str  # "bpe" or "unigram"
    unk_id: int | None
    byte_fallback: bool
    add_dummy_prefix: bool = True
    remove_extra_whitespaces: bool = False
    escape_whitespaces: bool = True
    precompiled_charsmap: bytes = b""
    add_bos: bool = False
    bos_id: int | None = None
    eos_id: int | None = None


# --- SentencePiece ---------------------------------------------------------------------


def read_sentencepiece_model(path: Path, *, add_bos: bool = True) -> SentencePieceSpec:
    """Parse a `tokenizer.model` protobuf into a spec."""
    try:
        from sentencepiece import sentencepiece_model_pb2
    except ImportError as exc:  # protobuf missing: the pb2 module imports it
        raise TokenizerError(f"reading {path} needs protobuf and sentencepiece: {exc}") from exc
    proto = sentencepiece_model_pb2.ModelProto()
    try:
        proto.ParseFromString(Path(path).read_bytes())
    except Exception as exc:  # protobuf raises DecodeError, or RuntimeWarning-derived errors
        raise TokenizerError(f"{path} is not a SentencePiece model: {exc}") from exc
    if not proto.pieces:
        raise TokenizerError(f"{path} is not a SentencePiece model: it holds no pieces")
    trainer, norm = proto.trainer_spec, proto.normalizer_spec
    algorithm = {1: "unigram", 2: "bpe"}.get(trainer.model_type)
    if algorithm is None:
        kind = trainer.ModelType.Name(trainer.model_type)
        raise TokenizerError(f"{path}: SentencePiece model type {kind} is not supported (BPE, UNIGRAM)")
    if trainer.treat_whitespace_as_suffix:
        raise TokenizerError(f"{path}: treat_whitespace_as_suffix SentencePiece models are not supported")
    types = [p.type for p in proto.pieces]
    bos_id = _piece_id(trainer.bos_id, len(types))
    return SentencePieceSpec(
        pieces=[p.piece for p in proto.pieces],
        scores=[p.score for p in proto.pieces],
        types=types,
        algorithm=algorithm,
        unk_id=_piece_id(trainer.unk_id, len(types)),
        byte_fallback=trainer.byte_fallback,
        add_dummy_prefix=norm.add_dummy_prefix,
        remove_extra_whitespaces=norm.remove_extra_whitespaces,
        escape_whitespaces=norm.escape_whitespaces,
        precompiled_charsmap=bytes(norm.precompiled_charsmap),
        add_bos=add_bos and bos_id is not None,
        bos_id=bos_id,
        eos_id=_piece_id(trainer.eos_id, len(types)),
    )


def _piece_id(value: int, size: int) -> int | None:
    return value if 0 <= value < size else None  # the trainer writes -1 for "none"


def build_sentencepiece(spec: SentencePieceSpec) -> HFTokenizer:
    """A `tokenizers` pipeline that encodes plain text exactly as sentencepiece does."""
    if not (len(spec.pieces) == len(spec.scores) == len(spec.types)):
        raise TokenizerError("SentencePiece vocab is inconsistent: pieces, scores and types differ in length")
    model = _spm_bpe(spec) if spec.algorithm == "bpe" else _spm_unigram(spec)
    tok = HFTokenizer(model)
    tok.normalizer = _spm_normalizer(spec)
    _add_typed_tokens(tok, spec.pieces, spec.types)
    install_sentencepiece_decoder(tok, add_dummy_prefix=spec.add_dummy_prefix)
    if spec.add_bos and spec.bos_id is not None:
        _prepend_bos(tok, spec.pieces[spec.bos_id], spec.bos_id)
    return tok


def install_sentencepiece_decoder(tok: HFTokenizer, *, add_dummy_prefix: bool) -> None:
    """Set the decoder; call again after adding tokens.

    The encoder puts a dummy prefix on every segment between added tokens, so the decoder
    drops one space at the start of the text and one right after each added token. That
    keeps decode(encode(text)) == text, and the indentation of code generated after
    <|fim_middle|> right.
    """
    steps = [decoders.Replace(SPIECE_SPACE, " "), decoders.ByteFallback(), decoders.Fuse()]
    if add_dummy_prefix:
        steps.append(decoders.Strip(" ", 1, 0))
        added = sorted({t.content.replace(SPIECE_SPACE, " ") for t in tok.get_added_tokens_decoder().values()})
        if added:
            after_added = "(?<=" + "|".join(_onig_escape(c) for c in added) + ") "
            steps.append(decoders.Replace(Regex(after_added), ""))
    tok.decoder = decoders.Sequence(steps)


def _onig_escape(text: str) -> str:
    # Escape only the metacharacters: Oniguruma gives some escaped letters and "<"/">"
    # other meanings, so re.escape's output is not safe there.
    return "".join("\\" + c if c in "\\^$.|?*+()[]{}" else c for c in text)


def _spm_normalizer(spec: SentencePieceSpec) -> normalizers.Normalizer:
    steps: list[normalizers.Normalizer] = []
    if spec.precompiled_charsmap:
        steps.append(normalizers.Precompiled(spec.precompiled_charsmap))
    if spec.remove_extra_whitespaces:
        # sentencepiece drops leading/trailing spaces and collapses runs, after the charsmap
        # (which maps tabs and newlines to spaces in the nmt_* rules).
        steps += [normalizers.Replace(Regex(r"\A +| +\z"), ""), normalizers.Replace(Regex(" {2,}"), " ")]
    if spec.add_dummy_prefix:
        # Normalizers run once per segment between added tokens, so each segment gets one.
        steps.append(normalizers.Prepend(SPIECE_SPACE))  # a no-op on empty text, as in sentencepiece
    if spec.escape_whitespaces:
        steps.append(normalizers.Replace(" ", SPIECE_SPACE))
    return normalizers.Sequence(steps)


def _spm_bpe(spec: SentencePieceSpec) -> models.BPE:
    """SentencePiece BPE merges the adjacent pair whose concatenation is the best-scoring
    piece; ordering merges by the merged piece's score gives the same result in HF BPE."""
    vocab: dict[str, int] = {}
    for i, piece in enumerate(spec.pieces):
        vocab.setdefault(piece, i)
    mergeable = {p: i for p, i in vocab.items() if spec.types[i] == NORMAL}
    ranked = []
    for piece, pid in mergeable.items():
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in mergeable and right in mergeable:
                ranked.append((-spec.scores[pid], pid, cut, left, right))
    ranked.sort()
    unk = spec.pieces[spec.unk_id] if spec.unk_id is not None else None
    try:
        return models.BPE(vocab, [(left, right) for *_, left, right in ranked], unk_token=unk,
                          fuse_unk=True, byte_fallback=spec.byte_fallback)
    except Exception as exc:
        raise TokenizerError(f"cannot build a BPE model from the SentencePiece vocab: {exc}") from exc


def _spm_unigram(spec: SentencePieceSpec) -> models.Unigram:
    vocab = [
        (piece, float(score) if kind in (NORMAL, USER_DEFINED) else _UNREACHABLE_SCORE)
        for piece, score, kind in zip(spec.pieces, spec.scores, spec.types)
    ]
    try:
        return models.Unigram(vocab, unk_id=spec.unk_id, byte_fallback=spec.byte_fallback)
    except Exception as exc:
        raise TokenizerError(f"cannot build a Unigram model from the SentencePiece vocab: {exc}") from exc


# --- GGUF ------------------------------------------------------------------------------


def build_gguf(meta: Mapping[str, Any]) -> HFTokenizer:
    """A `tokenizers` pipeline from the `tokenizer.ggml.*` fields of a GGUF file."""
    kind = meta.get("tokenizer.ggml.model")
    if kind is None:
        raise TokenizerError("GGUF metadata has no tokenizer.ggml.model: the file carries no tokenizer")
    tokens = [str(t) for t in _required(meta, "tokenizer.ggml.tokens")]
    if not tokens:
        raise TokenizerError("GGUF metadata field tokenizer.ggml.tokens is empty")
    types = _token_types(meta, len(tokens))
    if kind == "gpt2":
        return _gguf_byte_level_bpe(meta, tokens, types)
    if kind == "llama":
        return build_sentencepiece(_gguf_sentencepiece_spec(meta, tokens, types))
    raise TokenizerError(f"GGUF tokenizer model {kind!r} is not supported (supported: 'gpt2', 'llama')")


def _required(meta: Mapping[str, Any], key: str) -> Any:
    if key not in meta:
        raise TokenizerError(f"GGUF metadata lacks {key}: cannot rebuild the tokenizer")
    return meta[key]


def _token_types(meta: Mapping[str, Any], n: int) -> list[int]:
    raw = meta.get("tokenizer.ggml.token_type")
    if raw is None:
        log.warning("GGUF metadata has no tokenizer.ggml.token_type; treating every token as normal")
        return [NORMAL] * n
    types = [int(t) for t in raw]
    if len(types) != n:
        raise TokenizerError(f"GGUF tokenizer.ggml.token_type has {len(types)} entries for {n} tokens")
    return types


def _gguf_byte_level_bpe(meta: Mapping[str, Any], tokens: list[str], types: list[int]) -> HFTokenizer:
    vocab: dict[str, int] = {}
    for i, token in enumerate(tokens):
        vocab.setdefault(token, i)
    merges = []
    for line in _required(meta, "tokenizer.ggml.merges"):
        left, sep, right = str(line).partition(" ")
        if not sep or not left or not right:
            raise TokenizerError(f"GGUF tokenizer.ggml.merges holds a malformed entry {line!r}")
        merges.append((left, right))
    pre = str(meta.get("tokenizer.ggml.pre", "default"))
    try:
        model = models.BPE(vocab, merges, ignore_merges=pre in _IGNORE_MERGES_PRE)
    except Exception as exc:
        raise TokenizerError(f"GGUF BPE vocab and merges do not fit together: {exc}") from exc
    tok = HFTokenizer(model)
    tok.pre_tokenizer = _byte_level_pre_tokenizer(pre)
    tok.decoder = decoders.ByteLevel()
    _add_typed_tokens(tok, tokens, types)
    _maybe_prepend_gguf_bos(tok, meta, tokens, default=False)
    return tok


def _byte_level_pre_tokenizer(pre: str) -> pre_tokenizers.PreTokenizer:
    if pre in _DIGIT_SPLIT_PRE:
        return pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ])
    if pre not in _PRE_PATTERNS:
        log.warning("GGUF tokenizer.ggml.pre %r is unknown; splitting with GPT-2's regex, "
                    "which may tokenize differently from the model's training", pre)
    pattern = _PRE_PATTERNS.get(pre)
    if pattern is None:
        return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    return pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])


def _gguf_sentencepiece_spec(meta: Mapping[str, Any], tokens: list[str], types: list[int]) -> SentencePieceSpec:
    scores = [float(s) for s in _required(meta, "tokenizer.ggml.scores")]
    if len(scores) != len(tokens):
        raise TokenizerError(f"GGUF tokenizer.ggml.scores has {len(scores)} entries for {len(tokens)} tokens")
    unk_id = _token_id(meta, "tokenizer.ggml.unknown_token_id", len(tokens))
    if unk_id is None:
        unk_id = next((i for i, t in enumerate(types) if t == UNKNOWN), None)
    bos_id = _token_id(meta, "tokenizer.ggml.bos_token_id", len(tokens))
    return SentencePieceSpec(
        pieces=tokens, scores=scores, types=types,
        # llama.cpp encodes every SPM vocab by score-ordered merges, Unigram-trained or not.
        algorithm="bpe",
        unk_id=unk_id,
        byte_fallback=BYTE in types,
        add_dummy_prefix=bool(meta.get("tokenizer.ggml.add_space_prefix", True)),
        add_bos=bool(meta.get("tokenizer.ggml.add_bos_token", True)) and bos_id is not None,
        bos_id=bos_id,
    )


def _maybe_prepend_gguf_bos(tok: HFTokenizer, meta: Mapping[str, Any], tokens: list[str], *, default: bool) -> None:
    bos_id = _token_id(meta, "tokenizer.ggml.bos_token_id", len(tokens))
    if bos_id is not None and bool(meta.get("tokenizer.ggml.add_bos_token", default)):
        _prepend_bos(tok, tokens[bos_id], bos_id)


def gguf_token_id(meta: Mapping[str, Any], key: str) -> int | None:
    """An id field such as tokenizer.ggml.eos_token_id, range-checked against the vocab."""
    return _token_id(meta, key, len(meta.get("tokenizer.ggml.tokens") or ()))


def _token_id(meta: Mapping[str, Any], key: str, vocab_size: int) -> int | None:
    raw = meta.get(key)
    if raw is None:
        return None
    value = int(raw)
    if not 0 <= value < vocab_size:
        raise TokenizerError(f"GGUF {key} = {value} lies outside the vocab of {vocab_size} tokens")
    return value


# --- shared ----------------------------------------------------------------------------


def _add_typed_tokens(tok: HFTokenizer, pieces: Sequence[str], types: Sequence[int]) -> None:
    """Control and unknown pieces become special added tokens, user-defined ones plain added
    tokens: both are then matched whole in raw text (as llama.cpp does) and never split."""
    special = [AddedToken(p, special=True, normalized=False)
               for p, t in zip(pieces, types) if t in (CONTROL, UNKNOWN) and p]
    plain = [AddedToken(p, special=False, normalized=False)
             for p, t in zip(pieces, types) if t == USER_DEFINED and p]
    if special:
        tok.add_special_tokens(special)
    if plain:
        tok.add_tokens(plain)


def _prepend_bos(tok: HFTokenizer, bos: str, bos_id: int) -> None:
    tok.post_processor = processors.TemplateProcessing(
        single=[bos, "$A"], pair=[bos, "$A", bos, "$B:1"], special_tokens=[(bos, bos_id)])
