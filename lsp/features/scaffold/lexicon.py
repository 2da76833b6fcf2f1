"""What a field's label says about its type: the lexicon in lexicon.json (data), and its lookup.

A *lead* term decides when the label starts with it: 是否预约 and "whether we may call"
are booleans, "number of seats" an integer. Otherwise a *head* term decides when the
label ends with it, because the head noun carries the type and the words before it only
modify it: 请假开始日期 is a date, 开始时间 a datetime. The longest matching term wins, so
手机号码 is a phone (手机号码), not a code (号码). English terms match whole words, the
label's last word also in the plural ("comments" for "comment"); Chinese terms match
characters. A label no term matches gets None: the sentence left its type open.

Kinds are the spec's types (spec.FIELD_TYPES) without `choice` (a field is a choice when
the sentence lists its values, not because of its name), plus `code`: a record's
identifier such as WX-2026-001, stored as bounded text.
"""

from __future__ import annotations

import importlib.resources
import json
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from loopcoder.engine.errors import LoopcoderError

from .spec import FIELD_TYPES

KINDS = tuple(t for t in FIELD_TYPES if t != "choice") + ("code",)
CODE_MAX_LENGTH = 40
LANGUAGES = ("zh", "en")
_WORD = re.compile(r"[a-z0-9]+(?:[-.'][a-z0-9]+)*\.?")


def spec_type(kind: str) -> str:
    """The spec type a kind is stored as: `code` is text; every other kind is its own type."""
    return "text" if kind == "code" else kind


class LexiconError(LoopcoderError):
    """lexicon.json is malformed: a packaging or editing mistake, named precisely."""


@dataclass(frozen=True)
class Match:
    kind: str
    term: str  # the lexicon term that decided
    where: str  # "lead" or "head"


@dataclass(frozen=True)
class _Term:
    text: str
    kind: str
    words: tuple[str, ...] | None  # English terms: their words; Chinese terms: None


def _words(text: str) -> list[str]:
    return [w.rstrip(".") for w in _WORD.findall(text)]


def _normalize(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold().strip()


class Lexicon:
    def __init__(self, data: Any) -> None:
        if not isinstance(data, dict):
            raise LexiconError("the lexicon is a JSON object with 'lead', 'head' and 'optional'")
        self.lead = self._terms(data, "lead")
        self.head = self._terms(data, "head")
        self.optional = self._terms(data, "optional", kind_level=False)
        self.type_names = {t.text: t.kind for t in self._terms(data, "type_names")}

    @staticmethod
    def _terms(data: dict, section: str, kind_level: bool = True) -> list[_Term]:
        table = data.get(section)
        if not isinstance(table, dict):
            raise LexiconError(f"the lexicon has no '{section}' table")
        by_kind = table.items() if kind_level else [("optional", table)]
        terms = []
        for kind, languages in by_kind:
            if kind_level and kind not in KINDS:
                raise LexiconError(f"lexicon {section}.{kind}: unknown kind; use one of {', '.join(KINDS)}")
            if not isinstance(languages, dict) or not set(languages) <= set(LANGUAGES):
                raise LexiconError(f"lexicon {section}.{kind}: a table of {' and '.join(LANGUAGES)} term lists")
            for language, words in languages.items():
                if not isinstance(words, list) or not all(isinstance(w, str) and w.strip() for w in words):
                    raise LexiconError(f"lexicon {section}.{kind}.{language}: a list of non-empty terms")
                for word in words:
                    text = _normalize(word)
                    terms.append(_Term(text, kind, tuple(_words(text)) if text.isascii() else None))
        # Longest first: the first match is the most specific one.
        return sorted(terms, key=lambda t: -len(t.text))

    def classify(self, label: str) -> Match | None:
        """The kind `label` names: by a lead term, else by the longest head term; None when none matches."""
        text = _normalize(label)
        words = _words(text) if re.match(r"[a-z0-9]", text) or re.search(r"[a-z0-9.]$", text) else []
        lead = next((t for t in self.lead if _starts(text, words, t)), None)
        if lead is not None:
            return Match(lead.kind, lead.text, "lead")
        head = next((t for t in self.head if _ends(text, words, t)), None)
        return Match(head.kind, head.text, "head") if head is not None else None

    def type_named(self, words: str) -> str | None:
        """The kind that `words` name as a whole (日期, "a date", "yes/no"), or None."""
        text = re.sub(r"^(?:an?|the)\s+|\s+(?:type|field)$|类型$|型$", "", _normalize(words)).strip()
        return self.type_names.get(text)

    def is_optional(self, label: str) -> bool:
        """True for a label such as 备注 or "comments": a field a record usually leaves empty."""
        text = _normalize(label)
        words = _words(text)
        return any(_ends(text, words, t) for t in self.optional)


def _starts(text: str, words: list[str], term: _Term) -> bool:
    if term.words is None:
        return text.startswith(term.text)
    return re.match(r"[a-z0-9]", text) is not None and tuple(words[: len(term.words)]) == term.words


def _ends(text: str, words: list[str], term: _Term) -> bool:
    if term.words is None:
        return text.endswith(term.text)
    if not words or not re.search(r"[a-z0-9.]$", text) or len(words) < len(term.words):
        return False
    tail = words[len(words) - len(term.words):]
    last = tail[-1]
    plurals = {last, last[:-1] if last.endswith("s") else last, last[:-2] if last.endswith("es") else last}
    return tuple(tail[:-1]) == term.words[:-1] and term.words[-1] in plurals


@lru_cache(maxsize=1)
def load_lexicon() -> Lexicon:
    """The lexicon bundled with the package (lexicon.json)."""
    text = importlib.resources.files(__package__).joinpath("lexicon.json").read_text(encoding="utf-8")
    try:
        return Lexicon(json.loads(text))
    except json.JSONDecodeError as e:
        raise LexiconError(f"lexicon.json is not JSON: {e}") from None
