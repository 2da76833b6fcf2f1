"""What a sentence states about its form, read before any model is asked (issue 23; docs/scaffold.md).

    "请做一个员工请假申请表单，包含申请人姓名、所属部门（研发部、市场部、财务部）、请假开始日期……"
      title 员工请假申请   fields 申请人姓名 (text), 所属部门 (choice: 研发部, 市场部, 财务部), 请假开始日期 (date), ...

1. The list of fields starts after an introducer: 包含, 包括, 含有, "including", "with",
   "fields:" or a colon; failing those, 记录, 收集, 有, "record", "collect". It ends at the
   end of the sentence (。 . ! ?); what follows is reported, not dropped.
2. Choices after 分为, 分成, 包括, "such as", "one of" or "either" become a parenthesis,
   so that every field is `label (choices)`. A Chinese run of choices ends at the next
   comma or semicolon; an English one after the item that follows its "or"/"and".
3. The list is cut into fields at 、 , ; and at the conjunctions 和 及 与 以及 或 还有 and
   or, outside parentheses. jieba segments the text, so a 和 or 与 inside a word
   (参与人员, 总和) is not a conjunction, and 有 introduces a list only as a word of its own.
4. Each field loses its filler (以及, 还有, and, a, the, 字段, etc.). A parenthesis with two
   or more items gives its choices, (可选)/(optional) makes the field optional, and any
   other single item becomes its help text. "from 1 to 5" gives integer bounds.
5. Its kind: `choice` when it has choices, a number when it has bounds, else what the
   lexicon (lexicon.py) says; None when nothing says, and then the model decides.
6. The title is the noun phrase being collected: 做一个【员工请假申请】表单, 收集【设备维修记录】,
   "a 【leave request】 form", "a form to 【register new employees】".

Whatever is stated but cannot be read as a field ends up in `notes`.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass, replace
from functools import lru_cache

from loopcoder.engine.errors import InvalidRequestError

from .lexicon import Lexicon, load_lexicon

MAX_SENTENCE_CHARS = 2000
MAX_LABEL_CHARS = 40
MAX_STATED_FIELDS = 60
SUGGESTION = ("name the fields after 包含/including, for example: \"做一个表单收集设备维修记录，包含日期、编号、"
              "故障类型（电气、机械、其他）、处理人\" or \"a form to record equipment repairs with date, id, fault type "
              "(electrical, mechanical or other) and handler\"")


class NoFieldsError(InvalidRequestError):
    """The sentence names no field the form could have; the message suggests a form of words."""


@dataclass(frozen=True)
class StatedField:
    label: str
    kind: str | None  # a lexicon kind or "choice"; None: left open by the sentence and the lexicon
    choices: tuple[str, ...] = ()
    required: bool | None = None  # None: the sentence does not say
    minimum: int | float | None = None
    maximum: int | float | None = None
    help: str | None = None
    reason: str = ""  # why this kind: "choices", "range", "lexicon: 日期"


@dataclass(frozen=True)
class StatedForm:
    title: str | None
    fields: tuple[StatedField, ...]
    notes: tuple[str, ...]  # what the sentence states that is not in `fields` or `title`
    chinese: bool  # the sentence is written in Chinese


# -- segmentation ---------------------------------------------------------------------------

@lru_cache(maxsize=1)
def _jieba():
    import jieba

    jieba.setLogLevel(logging.WARNING)  # it logs the building of its dictionary at INFO to stderr
    return jieba


def words(text: str) -> list[str]:
    """jieba's words of `text`, spaces and punctuation included: "".join(words(t)) == t."""
    return _jieba().lcut(text) if text else []


_DELIMITERS = frozenset("、,;|")
_CONJUNCTIONS = frozenset({"和", "及", "与", "以及", "或", "或者", "还有", "并且", "跟", "and", "or", "plus"})
_HAN = re.compile(r"[\u3400-\u9fff]")


def split_list(text: str, extra: frozenset[str] = frozenset()) -> list[str]:
    """`text` cut at delimiters and conjunctions outside parentheses (and at `extra`); pieces stripped, none empty."""
    pieces, current, depth = [], [], 0
    for word in words(text):
        low = word.casefold()
        depth += (word == "(") - (word == ")")
        if depth == 0 and (word in _DELIMITERS or word in extra or low in _CONJUNCTIONS):
            pieces.append("".join(current))
            current = []
        else:
            current.append(word)
    pieces.append("".join(current))
    return [p.strip() for p in pieces if p.strip(" .")]


# -- the parts of the sentence -------------------------------------------------------------

_FIRST_INTRODUCERS = re.compile(
    r"包含|包括|含有|需要填写|需填写|字段有|字段为|字段包括|内容有|以下字段|"
    r"\b(?:including|includes|include|containing|contains|with fields|with|fields|asking for|that asks for)\b|:",
    re.IGNORECASE)
_LATER_INTRODUCERS = re.compile(r"记录|收集|登记|填写|\b(?:to record|to collect|to capture|collecting|recording|has|having)\b",
                                re.IGNORECASE)
_WORD_INTRODUCERS = frozenset({"有", "含"})  # introduce the list only as words of their own
_SENTENCE_END = re.compile(r"[。!?]|\.(?=\s|$)")


_CLAUSE_START = re.compile(r"(?:^|[,;:(]|表单|表格|表|问卷|用于|用来|\b(?:form|survey|for|that|to)\b)\s*$", re.IGNORECASE)


def _find_list(text: str) -> tuple[str, str] | None:
    """(what comes before the list, the list and what follows), or None without an introducer.

    A weaker introducer (记录, collect) counts only where a clause starts: in 访客登记表，记录姓名 the
    list follows 记录, not 登记.
    """
    found = _FIRST_INTRODUCERS.search(text)
    if found is None:
        found = next((m for m in _LATER_INTRODUCERS.finditer(text) if _CLAUSE_START.search(text[: m.start()])), None)
    if found:
        return text[: found.start()], text[found.end():].lstrip(" :")
    position = 0
    for word in words(text):
        if word in _WORD_INTRODUCERS:
            return text[:position], text[position + len(word):]
        position += len(word)
    return None


_ZH_CHOICES = re.compile(r"(?:分为|分成|包括|可选值为|可选值?有|可选)[:]?([^,;()。]+)")
_EN_CHOICES = re.compile(r"\s*,?\s*\b(?:such as|one of|either|like)\s+", re.IGNORECASE)
_EN_LAST_CHOICE = re.compile(r"\s+(?:or|and)\s+", re.IGNORECASE)


def _choices_in_parentheses(text: str) -> str:
    """Choices introduced by words, rewritten as a parenthesis: 部门分为A、B -> 部门(A、B)."""
    text = _ZH_CHOICES.sub(lambda m: f"({m.group(1).strip()})", text)
    found = _EN_CHOICES.search(text)
    while found:
        before, rest = text[: found.start()], text[found.end():]
        if before.count("(") > before.count(")"):  # already in a parenthesis
            found = _EN_CHOICES.search(text, found.end())
            continue
        end = len(rest)
        for piece in re.finditer(r"[^,;()]+", rest):  # the run ends with the item after its "or"/"and"
            if _EN_LAST_CHOICE.search(piece.group()):
                end = piece.end()
                break
        text = f"{before} ({rest[:end].strip()}){rest[end:]}"
        found = _EN_CHOICES.search(text, len(before) + 1)
    return text


_FILLER_BEFORE = re.compile(
    r"^(?:以及|还有|另外|并且|并|和|及|与|或者|或|还要|还需要|需要|一个|一些|"
    r"(?:as well as|and|or|also|plus|then|an?|the|their|his|her|its|your|our|some)\b)\s*", re.IGNORECASE)
_FILLER_AFTER = re.compile(r"\s*(?:等等|等信息|等字段|等|字段|栏目|栏|\b(?:etc|fields?)\b)[.]?$", re.IGNORECASE)
_RANGE = re.compile(r"\s*(?:from\s+|between\s+|范围)?(-?\d+(?:\.\d+)?)\s*(?:to|and|-|~|到|至|–)\s*(-?\d+(?:\.\d+)?)"
                    r"\s*(?:分|星|stars?|points?)?$", re.IGNORECASE)
_OPTIONAL_MARKS = frozenset({"可选", "选填", "非必填", "可不填", "optional", "if any"})
_REQUIRED_MARKS = frozenset({"必填", "必选", "required", "mandatory"})
_CHOICE_LEAD = re.compile(r"^(?:such as|one of|either|like|e\.g\.|分为|分成|包括|可选)\s*", re.IGNORECASE)
_EDGE = " \t.,;:、。\"'“”‘’"


def _clean_label(text: str) -> str:
    text = text.strip(_EDGE)
    previous = None
    while previous != text:
        previous = text
        text = _FILLER_AFTER.sub("", _FILLER_BEFORE.sub("", text)).strip(_EDGE)
    return text


def _read_field(piece: str, lexicon: Lexicon, notes: list[str]) -> StatedField | None:
    groups = re.findall(r"\(([^()]*)\)", piece)
    label = _clean_label(re.sub(r"\([^()]*\)|[()]", " ", piece))
    choices: tuple[str, ...] = ()
    required, help_text = None, None
    for group in groups:
        items = [_CHOICE_LEAD.sub("", item).strip(_EDGE) for item in split_list(_CHOICE_LEAD.sub("", group.strip()),
                                                                              extra=frozenset("/"))]
        items = [item for item in dict.fromkeys(items) if item]
        if len(items) >= 2 and not choices:
            choices = tuple(items)
        elif len(items) == 1 and items[0].casefold() in _OPTIONAL_MARKS:
            required = False
        elif len(items) == 1 and items[0].casefold() in _REQUIRED_MARKS:
            required = True
        elif len(items) == 1 and help_text is None:
            help_text = items[0]
        elif items:
            notes.append(f"{label or piece}: not understood: ({group.strip()})")
    minimum = maximum = None
    bounds = _RANGE.search(label)
    if bounds and _RANGE.sub("", label).strip(_EDGE):
        label = _clean_label(_RANGE.sub("", label))
        minimum, maximum = sorted(float(x) if "." in x else int(x) for x in bounds.groups())
    if not label:
        notes.append(f"not read as a field (no label): {piece!r}")
        return None
    if len(label) > MAX_LABEL_CHARS:
        notes.append(f"not read as a field (longer than {MAX_LABEL_CHARS} characters): {label!r}")
        return None
    match = lexicon.classify(label)
    if choices:
        kind, reason = "choice", "choices"
    elif minimum is not None:
        decimal = (match and match.kind == "decimal") or any(isinstance(v, float) for v in (minimum, maximum))
        kind, reason = ("decimal" if decimal else "integer"), "range"
    elif match is not None:
        kind, reason = match.kind, f"lexicon: {match.term}"
    else:
        kind, reason = None, ""
    if required is None and (kind == "boolean" or lexicon.is_optional(label)):
        required = False
    return StatedField(label, kind, choices, required, minimum, maximum, help_text, reason)


# -- the title ------------------------------------------------------------------------------

_ZH_MAKE = re.compile(r"(?:做|建|创建|生成|设计|制作|弄|搞|写|开发|需要)\s*(?:一个|一份|一张|个|份|张)?(?P<t>.*?)的?"
                      r"(?:表单|表格|问卷|表)")
_ZH_COLLECT = re.compile(r"(?:收集|采集|记录|登记|管理|统计)(?P<t>[^,;]+?)(?:的(?:表单|表格|信息|数据))?$")
_ZH_TRAILING = re.compile(r"(?P<t>[^,;]+?)的?(?:表单|表格|问卷|表)$")
_ZH_LEADING = re.compile(r"^(?:一个|用于|用来|用以|收集|采集|填写)+")
_EN_NAMED = re.compile(r"(?P<t>[a-z][\w' -]*?)\s+(?:form|survey|questionnaire|sheet)\b", re.IGNORECASE)
_EN_PURPOSE = re.compile(r"\b(?:form|survey|questionnaire|sheet)\s+(?:to|for|that|which)\s+(?P<t>.+)$", re.IGNORECASE)
_EN_LEADING = re.compile(r"^(?:(?:please|can you|could you|create|make|build|generate|design|write|give me|"
                         r"i need|i want|we need|need|want|an?|the|simple|small|basic|quick|collect|record|capture|"
                         r"gather|track|log|keep track of|store|enter|lets? (?:people|users|us))\b\s*)+", re.IGNORECASE)


def read_title(before: str, chinese: bool) -> str | None:
    """The noun phrase being collected, from what precedes the list of fields; None if there is none."""
    before = before.strip(_EDGE)
    if chinese:
        for pattern in (_ZH_MAKE, _ZH_COLLECT, _ZH_TRAILING):
            for found in pattern.finditer(before):
                title = _ZH_LEADING.sub("", found.group("t")).strip(_EDGE + "的")
                if title:
                    return title[:60]
        return None
    for pattern in (_EN_NAMED, _EN_PURPOSE):
        found = pattern.search(before)
        title = _EN_LEADING.sub("", found.group("t")).strip(_EDGE) if found else ""
        if title:
            return (title[0].upper() + title[1:])[:60]
    return None


# -- the whole sentence ---------------------------------------------------------------------

def read_sentence(sentence: str, lexicon: Lexicon | None = None) -> StatedForm:
    """The title, fields and notes a sentence states; NoFieldsError when it names no field."""
    lexicon = lexicon or load_lexicon()
    text = unicodedata.normalize("NFKC", " ".join(sentence.split()))
    if not text.strip(_EDGE + "()!?"):
        raise NoFieldsError(f"describe the form in a sentence: {SUGGESTION}")
    if len(text) > MAX_SENTENCE_CHARS:
        raise InvalidRequestError(f"the description is {len(text)} characters; keep it under {MAX_SENTENCE_CHARS}, "
                                  "one or two sentences")
    chinese = bool(_HAN.search(text))
    text = re.sub(r"\be\.g\.", "such as", text, flags=re.IGNORECASE)
    text = re.sub(r"\bas well as\b", ",", text, flags=re.IGNORECASE)
    found = _find_list(text)
    before, listed = found if found else ("", text)
    end = _SENTENCE_END.search(listed)
    notes: list[str] = []
    if end:
        rest = listed[end.end():].strip(_EDGE)
        listed = listed[: end.start()]
        if rest:
            notes.append(f"not understood: {rest!r}")
    pieces = split_list(_choices_in_parentheses(listed))
    title = read_title(before, chinese)
    if found is None:  # no introducer: a bare list ("做一个请假表单，姓名、部门"), or no list at all
        if len(pieces) < 2:
            raise NoFieldsError(f"no list of fields found in {sentence.strip()[:120]!r}: {SUGGESTION}")
        title = read_title(pieces[0], chinese)
        pieces = pieces[1:] if title else pieces
    fields = _fields(pieces, lexicon, notes)
    if not fields:
        raise NoFieldsError(f"no field found in {sentence.strip()[:120]!r}: {SUGGESTION}")
    if title is None:
        notes.append("no title found in the sentence")
    return StatedForm(title, tuple(fields), tuple(notes), chinese)


def _fields(pieces: list[str], lexicon: Lexicon, notes: list[str]) -> list[StatedField]:
    fields: list[StatedField] = []
    seen: set[str] = set()
    for piece in pieces:
        field = _read_field(piece, lexicon, notes)
        if field is None:
            continue
        key = field.label.casefold()
        if key in seen:
            notes.append(f"{field.label}: named twice; kept once")
            continue
        if len(fields) == MAX_STATED_FIELDS:
            notes.append(f"{field.label}: more than {MAX_STATED_FIELDS} fields; left out")
            continue
        seen.add(key)
        fields.append(field)
    return fields


def read_fields(text: str, lexicon: Lexicon | None = None) -> tuple[list[StatedField], list[str]]:
    """The fields a bare list states ("备注、附件(选填)", "priority (low, high) and notes"), and notes on
    what could not be read: a sentence's list without its introducer and title."""
    notes: list[str] = []
    listed = unicodedata.normalize("NFKC", " ".join(text.split()))
    return _fields(split_list(_choices_in_parentheses(listed)), lexicon or load_lexicon(), notes), notes


def with_kind(field: StatedField, kind: str, reason: str) -> StatedField:
    """`field` with a kind decided after reading (by the model, or text by default)."""
    return replace(field, kind=kind, reason=reason)
