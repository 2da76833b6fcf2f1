"""The tokenizer files of a HF model directory, read for `Tokenizer.from_pretrained_dir`.

tokenizer.json (or a SentencePiece tokenizer.model, converted by `tokenizer_convert`),
tokenizer_config.json (special tokens, added tokens, the chat template), chat_template.jinja,
and the eos ids of generation_config.json and config.json.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from tokenizers import AddedToken
from tokenizers import Tokenizer as HFTokenizer

from . import tokenizer_convert
from .errors import TokenizerError


def read_json(path: Path) -> dict:
    """The JSON object a file holds, or {} when there is no such file."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TokenizerError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise TokenizerError(f"{path} must hold a JSON object")
    return data


def load_tokenizer_json(path: Path) -> HFTokenizer:
    """tokenizer.json as a `tokenizers.Tokenizer`."""
    try:
        return HFTokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers reports parse errors as plain Exception
        raise TokenizerError(f"cannot load {path}: {exc}") from exc


def convert_sentencepiece(path: Path, config: Mapping[str, Any]) -> tuple[HFTokenizer, str | None, str | None]:
    """tokenizer.model converted, with the bos and eos pieces it names (None where it names none)."""
    # add_bos_token defaults to True in LlamaTokenizer and IQuestCoderTokenizer alike.
    spec = tokenizer_convert.read_sentencepiece_model(path, add_bos=bool(config.get("add_bos_token", True)))
    hf = tokenizer_convert.build_sentencepiece(spec)
    register_config_tokens(hf, config.get("added_tokens_decoder") or {})
    # The decoder must know every added token (see install_sentencepiece_decoder).
    tokenizer_convert.install_sentencepiece_decoder(hf, add_dummy_prefix=spec.add_dummy_prefix)
    bos = spec.pieces[spec.bos_id] if spec.bos_id is not None else None
    eos = spec.pieces[spec.eos_id] if spec.eos_id is not None else None
    return hf, bos, eos


def register_config_tokens(hf: HFTokenizer, added: Mapping[str, Any]) -> None:
    """Make tokenizer_config.json's added_tokens_decoder hold: each token at its id, with
    its special flag. A token the vocab lacks is appended; its id must then come out right."""
    have = hf.get_added_tokens_decoder()
    for key, info in sorted(added.items(), key=lambda kv: int(kv[0])):
        token_id, content = int(key), info.get("content")
        if not content:
            raise TokenizerError(f"tokenizer_config.json: added token {key} has no content")
        special = bool(info.get("special", False))
        if token_id in have and have[token_id].content == content and have[token_id].special == special:
            continue
        existing = hf.token_to_id(content)
        if existing is not None and existing != token_id:
            raise TokenizerError(f"tokenizer_config.json puts {content!r} at id {token_id}, the vocab at {existing}")
        token = AddedToken(content, special=special, normalized=bool(info.get("normalized", not special)),
                           lstrip=bool(info.get("lstrip", False)), rstrip=bool(info.get("rstrip", False)),
                           single_word=bool(info.get("single_word", False)))
        if special:
            hf.add_special_tokens([token])
        else:
            hf.add_tokens([token])
        if hf.token_to_id(content) != token_id:
            raise TokenizerError(f"tokenizer_config.json puts {content!r} at id {token_id}, "
                                 f"past the end of the vocab ({hf.token_to_id(content)} is next)")


def token_content(value: Any) -> str | None:
    """tokenizer_config.json writes tokens as a string or as {"content": ...}."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) and value else None


def eos_field(config: Mapping[str, Any]) -> list[int]:
    """A config's eos_token_id, one id or a list, as a list."""
    value = config.get("eos_token_id")
    if value is None:
        return []
    return [int(v) for v in value] if isinstance(value, list) else [int(value)]


def read_template(path: Path) -> str | None:
    """Newer transformers save the template apart, in chat_template.jinja; it then wins."""
    if not path.is_file():
        return None
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TokenizerError(f"cannot read {path}: {exc}") from exc


def pick_template(value: Any) -> str | None:
    """chat_template is a string, or a list of named templates (then take "default")."""
    if isinstance(value, list):
        named = {t.get("name"): t.get("template") for t in value if isinstance(t, dict)}
        value = named.get("default") or next(iter(named.values()), None)
    return value if isinstance(value, str) and value else None
