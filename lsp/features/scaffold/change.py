"""A change to an app asked for in words (issue 23; docs/scaffold.md, "Changing an app"):

    loopcoder scaffold --change "加一个备注字段，处理人改为必填" --spec APP/loopcoder-scaffold.json

The words are cut into clauses (at , ; 。 and at 并, 然后, 同时, "and" or "then" before a
verb), and every clause must read as one of these, or nothing changes and the message
names each clause that was not understood:

    add        加一个备注字段 · 增加附件和完成日期(选填) · add a notes field · add fields priority (low, high) and notes
    remove     删除备注 · 把备注去掉 · remove the notes field
    relabel    把处理人改名为维修人 · 处理人改为维修人 · rename handler to technician
    required   处理人改为必填 · 备注改为选填 · make handler required · make notes optional
    unique     编号不能重复 · 编号可以重复 · make code unique
    type       编号改为文本 · 数量改为小数 · make quantity a decimal (the words of lexicon.json's type_names)
    choices    故障类型的选项改为电气、机械、其他 · 故障类型增加选项其他 · 故障类型去掉选项机械 ·
               set fault type choices to electrical, mechanical · add choice other to fault type ·
               remove choice mechanical from fault type
    title      标题改为设备维修台账 · rename the form to Repair log

A field is named by its label or its name; a part of a label that only one field has is
enough. Added fields are read like a sentence's list (types from the lexicon, choices in
parentheses) and are optional unless the words say 必填/required, because the records
already saved have no value for them; the model, when there is one, names them and types
the ones the lexicon leaves open. A relabelled field keeps its column name, so no value moves.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from loopcoder.engine.api import CancelCheck, EngineAPI
from loopcoder.engine.errors import InvalidRequestError

from .describe import MAX_NEW_TOKENS, Progress, decide
from .lexicon import CODE_MAX_LENGTH, load_lexicon, spec_type
from .sentence import StatedForm, read_fields, split_list, words
from .spec import FormSpec, load_spec
from .summary import field_rules

MAX_CHANGE_CHARS = 1000
_EDGE = " \t.,;:、。\"'“”‘’"
EXAMPLES = ("加一个备注字段，处理人改为必填", "删除备注；故障类型增加选项其他", "add a notes field and make handler required",
            "rename handler to technician, set fault type choices to electrical, mechanical, other")


class ChangeError(InvalidRequestError):
    """The words of a change could not all be read, or name a field the app does not have; nothing changed."""


@dataclass(frozen=True)
class Op:
    kind: str  # add, remove, relabel, required, unique, type, choices, add_choices, remove_choices, title
    clause: str  # the words it was read from
    labels: tuple[str, ...] = ()  # the fields it names, as written
    value: Any = None


@dataclass(frozen=True)
class Change:
    spec: FormSpec
    ops: tuple[Op, ...]
    diff: tuple[str, ...]  # one line per field or title that differs, "+ ", "- " or "~ "
    notes: tuple[str, ...] = field(default=())
    model_used: bool = False


# -- cutting the words into clauses ----------------------------------------------------------

_CLAUSE_WORDS = frozenset({"并", "并且", "然后", "同时", "另外", "此外", "再"})
_VERBS = re.compile(r"^\s*(?:add|include|insert|append|remove|delete|drop|get rid of|rename|retitle|make|change|"
                    r"turn|set|let|require|call)\b", re.IGNORECASE)


def clauses(text: str) -> list[str]:
    """The clauses of a change, in order."""
    return [clause for clause, _ in _clauses(text)]


def _clauses(text: str) -> list[tuple[str, bool]]:
    """(clause, whether only a comma separates it from the one before: it may continue that one's list)."""
    text = unicodedata.normalize("NFKC", text)
    pieces: list[tuple[str, bool]] = []
    cut = re.split(r"([,;!?。\n]|\.(?=\s|$))", text)  # parts, with the separator before each
    for part, separator in zip(cut[::2], [""] + cut[1::2]):
        current, joined = "", separator == ","
        for word in words(part):
            if word in _CLAUSE_WORDS:
                pieces.append((current, joined))
                current, joined = "", False
            else:
                current += word
        pieces.append((current, joined))
    out = []
    for piece, joined in pieces:  # "add x and make y required": "and"/"then" before a verb starts a clause
        for n, clause in enumerate(re.split(r"\s+(?:and then|and|then|also)\s+(?=(?:add|include|remove|delete|drop|"
                                            r"rename|make|change|turn|set|let|require)\b)", piece, flags=re.IGNORECASE)):
            out.append((clause, joined and n == 0))
    return [(c.strip(_EDGE), joined) for c, joined in out if c.strip(_EDGE)]


# -- reading one clause ------------------------------------------------------------------------

_ZH_SET = r"(?:改为|改成|设为|设置为|变为|变成|换成|为|是)"
_REQUIRED = {"必填": True, "必选": True, "必须填写": True, "必须填": True, "required": True, "mandatory": True,
             "选填": False, "非必填": False, "可选": False, "可以不填": False, "不必填": False, "可不填": False,
             "optional": False, "not required": False}
_UNIQUE = {"唯一": True, "不能重复": True, "不可重复": True, "不允许重复": True, "不得重复": True, "unique": True,
           "be unique": True, "be distinct": True, "not repeat": True,
           "可以重复": False, "允许重复": False, "not unique": False}
_REQ_WORDS = "|".join(sorted(map(re.escape, _REQUIRED), key=len, reverse=True))
_UNIQUE_WORDS = "|".join(sorted(map(re.escape, _UNIQUE), key=len, reverse=True))
_L = r"(?:the\s+)?(?P<l>.+?)(?:\s+fields?)?"  # an English field reference

# (kind, pattern), tried in order; the first whose fields all resolve wins.
PATTERNS: list[tuple[str, re.Pattern]] = [(kind, re.compile(p, re.IGNORECASE)) for kind, p in [
    ("title", r"^(?:把)?(?:表单的?)?(?:标题|表单名称?|表名)" + _ZH_SET + r"(?P<v>.+)$"),
    ("title", r"^(?:rename|retitle|call)\s+the\s+form(?:\s+to|\s+as)?\s+(?P<v>.+)$"),
    ("title", r"^(?:change|set|make)\s+the\s+(?:form'?s\s+)?title\s+(?:to\s+)?(?P<v>.+)$"),
    ("add_choices", r"^(?:给|在|为)?(?P<l>.+?)(?:的选项|选项中|选项里|中|里)?(?:增加|添加|加上|加入|新增|加)(?:一个|一项)?选项[:]?(?P<v>.+)$"),
    ("add_choices", r"^add\s+(?:the\s+)?(?:choices?|options?|values?)\s+(?P<v>.+?)\s+(?:to|for)\s+" + _L + "$"),
    ("add_choices", r"^add\s+(?P<v>.+?)\s+as\s+(?:an?\s+)?(?:choices?|options?)\s+(?:to|for)\s+" + _L + "$"),
    ("remove_choices", r"^(?:把|从|在)?(?P<l>.+?)(?:的选项|选项中|选项里|中|里)?(?:去掉|删除|删掉|移除|去除)选项[:]?(?P<v>.+)$"),
    ("remove_choices", r"^(?:remove|delete|drop)\s+(?:the\s+)?(?:choices?|options?|values?)\s+(?P<v>.+?)\s+from\s+" + _L + "$"),
    ("choices", r"^(?:把)?(?P<l>.+?)的?(?:选项|可选值|选择项)" + _ZH_SET + r"[:]?(?P<v>.+)$"),
    ("choices", r"^(?:把)?(?P<l>.+?)(?:改为|改成)?(?:分为|分成)[:]?(?P<v>.+)$"),
    ("choices", r"^(?:set\s+|change\s+)?(?:the\s+)?(?P<l>.+?)(?:'s)?\s+(?:choices|options)\s*(?:to|are|become|:|=)\s*(?P<v>.+)$"),
    ("choices", r"^(?:let|make)\s+(?:the\s+)?(?P<l>.+?)\s+(?:be\s+)?one\s+of\s+(?P<v>.+)$"),
    ("required", r"^(?:把)?(?P<l>.+?)(?:字段|这一?项)?(?:改为|改成|设为|设置为|变为|变成|为|也|都|是)?(?P<v>"
                 + _REQ_WORDS + r")(?:项|字段)?$"),
    ("required", r"^make\s+" + _L + r"\s+(?P<v>" + _REQ_WORDS + r")$"),
    ("required", r"^" + _L + r"\s+(?:is|are|should be|must be|becomes?)\s+(?P<v>" + _REQ_WORDS + r")$"),
    ("unique", r"^(?:把)?(?P<l>.+?)(?:字段)?(?:改为|设为|要|必须|需要|应该|应|也|都)?(?P<v>" + _UNIQUE_WORDS + r")$"),
    ("unique", r"^make\s+" + _L + r"\s+(?P<v>unique|not unique)$"),
    ("unique", r"^" + _L + r"\s+(?:must|should)\s+(?P<v>be unique|be distinct|not repeat)$"),
    ("relabel", r"^(?:把)?(?P<l>.+?)(?:字段)?(?:的名称|的名字|的标签)?(?:改名为|改名成|重命名为|更名为|改叫|改称|名称改为)(?P<v>.+)$"),
    ("relabel", r"^rename\s+" + _L + r"\s+(?:to|as|into)\s+(?P<v>.+)$"),
    ("relabel", r"^(?:change|set)\s+the\s+(?:label|name)\s+of\s+" + _L + r"\s+to\s+(?P<v>.+)$"),
    ("type_or_relabel", r"^(?:把)?(?P<l>.+?)(?:字段)?(?:的类型)?" + _ZH_SET + r"(?P<v>.+)$"),
    ("type_or_relabel", r"^(?:change|turn)\s+" + _L + r"\s+(?:into|to)\s+(?P<v>.+)$"),
    ("type", r"^make\s+" + _L + r"\s+(?P<v>(?:an?\s+)?.+)$"),
    ("add", r"^(?:还要|还需要)?(?:加上?|添加|增加|新增|加入|补充|增设)(?:一个|一项|一栏|个|项|些|一些)?(?P<req>必填的?|选填的?|可选的?)?(?P<v>.+)$"),
    ("add", r"^(?:add|include|insert|append)\s+(?:(?:a|an|the|new|another|fields?)\s+)*(?P<req>required\s+|optional\s+|mandatory\s+)?(?P<v>.+)$"),
    ("remove", r"^(?:把)?(?:删除|删掉|删去|去掉|去除|移除|取消|不要)(?:了)?(?P<l>.+?)(?:字段|这一?项|这一栏)?$"),
    ("remove", r"^(?:把)?(?P<l>.+?)(?:字段|这一?项|这一栏)?(?:删除|删掉|删去|去掉|去除|移除|取消)(?:掉|了)?$"),
    ("remove", r"^(?P<l>.+?)(?:字段)?不要了$"),
    ("remove", r"^(?:remove|delete|drop|get rid of)\s+" + _L + "$"),
]]
_POLITE = re.compile(r"^(?:请|麻烦|帮我|帮忙|please\s+|also\s+|then\s+|and\s+)+", re.IGNORECASE)
_TAIL = re.compile(r"(?:吧|一下|,? please)$", re.IGNORECASE)


def _values(text: str) -> list[str]:
    items = [item.strip(_EDGE + "()") for item in split_list(text.strip(_EDGE + "()"), extra=frozenset("/"))]
    return [item for item in dict.fromkeys(items) if item]


def _field_labels(text: str) -> list[str]:
    return [label.strip(_EDGE) for label in split_list(text) if label.strip(_EDGE)]


def _normalize(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold().strip(_EDGE)


_REFERENCE_FILLER = re.compile(r"^(?:the\s+|把)|(?:\s+fields?|字段|这一?项|这一栏|的)$", re.IGNORECASE)


def find_field(fields: list[dict], text: str) -> dict:
    """The field `text` names: its label or name, else the one field whose label contains it (or is in it)."""
    wanted = _normalize(text)
    previous = None
    while previous != wanted:
        previous, wanted = wanted, _REFERENCE_FILLER.sub("", wanted).strip()
    for f in fields:
        if wanted in (_normalize(f["label"]), f["name"].casefold(), f["name"].replace("_", " ")):
            return f
    near = [f for f in fields if wanted and (wanted in _normalize(f["label"]) or _normalize(f["label"]) in wanted)]
    if len(near) == 1:
        return near[0]
    listing = ", ".join(f"{f['label']} ({f['name']})" for f in fields)
    if near:
        raise ChangeError(f"{text!r} could be any of {', '.join(f['label'] for f in near)}: name one of them exactly")
    raise ChangeError(f"the form has no field {text!r}; its fields are: {listing}")


def read_clause(clause: str, fields: list[dict]) -> Op:
    """The operation one clause asks for; ChangeError when none reads, or when its fields are not in the form."""
    text = _TAIL.sub("", _POLITE.sub("", unicodedata.normalize("NFKC", clause))).strip(_EDGE)
    lexicon = load_lexicon()
    first_error: ChangeError | None = None
    for kind, pattern in PATTERNS:
        found = pattern.match(text)
        if found is None:
            continue
        groups = found.groupdict()
        value = (groups.get("v") or "").strip(_EDGE)
        if kind == "add":
            required = groups.get("req")
            return Op("add", clause, (), (value, None if not required else _REQUIRED.get(
                required.strip().rstrip("的"), None)))
        if kind == "title":
            return Op("title", clause, (), value)
        try:
            labels = tuple(find_field(fields, label)["name"] for label in _field_labels(groups["l"]))
        except ChangeError as e:
            first_error = first_error or e
            continue
        if not labels:
            continue
        if kind == "remove":
            return Op("remove", clause, labels)
        if kind == "required":
            return Op("required", clause, labels, _REQUIRED[value.casefold()])
        if kind == "unique":
            return Op("unique", clause, labels, _UNIQUE[value.casefold()])
        if kind in ("choices", "add_choices", "remove_choices"):
            return Op(kind, clause, labels, tuple(_values(value)))
        named = lexicon.type_named(value)
        if kind in ("type", "type_or_relabel") and named is not None:
            return Op("type", clause, labels, named)
        if kind in ("relabel", "type_or_relabel") and value:
            return Op("relabel", clause, labels, value)
    if first_error is not None:
        raise first_error
    raise ChangeError(f"not understood: {clause!r}")


def read_change(text: str, spec: FormSpec) -> list[Op]:
    """Every operation the words ask for; ChangeError naming each clause that could not be read."""
    text = " ".join(unicodedata.normalize("NFKC", text).split())
    if not text.strip(_EDGE):
        raise ChangeError(f"say what to change, for example: {' / '.join(EXAMPLES)}")
    if len(text) > MAX_CHANGE_CHARS:
        raise ChangeError(f"the change is {len(text)} characters; keep it under {MAX_CHANGE_CHARS}")
    fields = [f.model_dump() for f in spec.fields]
    ops: list[Op] = []
    errors: list[str] = []
    for clause, joined in _clauses(text):
        try:
            ops.append(read_clause(clause, fields))
        except ChangeError as e:
            last = ops[-1] if ops and joined and not errors else None
            if last is not None and last.kind == "add":  # the rest of a list: "add notes, attachment and x"
                listed, required = last.value
                ops[-1] = Op("add", f"{last.clause}, {clause}", (), (f"{listed}、{clause}", required))
                continue
            if last is not None and last.kind in ("choices", "add_choices", "remove_choices"):  # "to a, b, c"
                ops[-1] = Op(last.kind, f"{last.clause}, {clause}", last.labels, last.value + tuple(_values(clause)))
                continue
            errors.append(str(e))
    if errors:
        raise ChangeError("nothing was changed: " + "; ".join(errors) + ". Changes read like: "
                          + " / ".join(EXAMPLES) + " (docs/scaffold.md, \"Changing an app\")")
    return ops


# -- applying it -------------------------------------------------------------------------------

def _retype(f: dict, kind: str) -> None:
    if f["type"] == spec_type(kind) and kind != "code":
        return  # already of that type: its rules stay
    f["type"] = spec_type(kind)
    if f["type"] != "choice":
        f["choices"] = None
    if f["type"] not in ("integer", "decimal"):
        f["min"] = f["max"] = None
    if f["type"] not in ("text", "long_text", "email", "phone"):
        f["min_length"] = f["max_length"] = None
    else:
        f["max_length"] = CODE_MAX_LENGTH if kind == "code" else None  # the type's default length
    if f["type"] == "boolean":
        f["unique"] = False


def apply_change(spec: FormSpec, ops: list[Op], sentence: str, engine: Callable[[], EngineAPI] | None = None,
                 cancelled: CancelCheck | None = None, progress: Progress | None = None,
                 max_new_tokens: int = MAX_NEW_TOKENS) -> Change:
    """The spec after `ops`, validated, with the readable diff; the model is asked only about added
    fields the lexicon leaves open."""
    data = spec.model_dump()
    fields: list[dict] = data["fields"]
    by_name = {f["name"]: f for f in fields}
    notes: list[str] = []
    model_used = False
    for op in ops:
        targets = [by_name[name] for name in op.labels if name in by_name]
        if op.labels and len(targets) != len(op.labels):
            raise ChangeError(f"{op.clause!r}: a field it names was removed by an earlier part of the change")
        if op.kind == "title":
            data["title"] = op.value
        elif op.kind == "remove":
            for f in targets:
                fields.remove(f)
                del by_name[f["name"]]
        elif op.kind == "relabel":
            if len(targets) != 1:
                raise ChangeError(f"{op.clause!r}: relabel one field at a time")
            targets[0]["label"] = op.value
        elif op.kind == "required":
            for f in targets:
                f["required"] = op.value
        elif op.kind == "unique":
            for f in targets:
                if op.value and f["type"] == "boolean":
                    raise ChangeError(f"{op.clause!r}: {f['label']} is a yes/no field; it cannot be unique")
                f["unique"] = op.value
        elif op.kind == "type":
            for f in targets:
                _retype(f, op.value)
        elif op.kind == "choices":
            if len(op.value) < 2:
                raise ChangeError(f"{op.clause!r}: give at least two choices, separated by 、 or commas")
            for f in targets:
                _retype(f, "text")
                f["type"], f["choices"] = "choice", list(op.value)
                f["max_length"] = None
        elif op.kind in ("add_choices", "remove_choices"):
            for f in targets:
                if f["type"] != "choice":
                    raise ChangeError(f"{op.clause!r}: {f['label']} has no choices; set them with "
                                      f"\"{f['label']}的选项改为A、B\" or \"set {f['label']} choices to a, b\"")
                have = list(f["choices"])
                if op.kind == "add_choices":
                    repeated = [c for c in op.value if c in have]
                    if repeated:
                        notes.append(f"{f['label']} already has {', '.join(repeated)}")
                    f["choices"] = have + [c for c in op.value if c not in have]
                else:
                    dropped = [_find_choice(have, c, op.clause, f["label"]) for c in op.value]
                    f["choices"] = [c for c in have if c not in dropped]
        elif op.kind == "add":
            added, used = _added_fields(op, fields, sentence, engine, cancelled, progress, max_new_tokens, notes)
            model_used = model_used or used
            fields += added
            by_name.update((f["name"], f) for f in added)
    new = load_spec(data).spec
    return Change(new, tuple(ops), tuple(spec_diff(spec, new)), tuple(notes), model_used)


def _find_choice(choices: list[str], text: str, clause: str, label: str) -> str:
    """The choice `text` names: itself, else the one choice that contains it (机械 for 机械故障)."""
    if text in choices:
        return text
    near = [c for c in choices if _normalize(text) in _normalize(c)]
    if len(near) == 1:
        return near[0]
    raise ChangeError(f"{clause!r}: {label} has no choice {text!r}; its choices are {', '.join(choices)}")


def _added_fields(op: Op, fields: list[dict], sentence: str, engine, cancelled, progress, max_new_tokens,
                  notes: list[str]) -> tuple[list[dict], bool]:
    listed, required = op.value
    stated, unread = read_fields(listed)
    notes += unread
    if not stated:
        raise ChangeError(f"{op.clause!r}: no field to add was found in it")
    labels = {_normalize(f["label"]) for f in fields}
    for f in stated:
        if _normalize(f.label) in labels:
            raise ChangeError(f"{op.clause!r}: the form already has a field {f.label!r}")
    # Records already saved have no value for a new field: optional unless the words say otherwise.
    stated = [replace(f, required=required if required is not None else bool(f.required)) for f in stated]
    form = StatedForm("-", tuple(stated), (), any("\u4e00" <= ch <= "\u9fff" for ch in listed))
    data, _, _, more, used = decide(form, sentence, engine, cancelled, progress, max_new_tokens)
    notes += more
    taken = {f["name"] for f in fields}
    added = []
    for f in data["fields"]:
        name, n = f["name"], 2
        while name in taken:  # a name the form already uses: a suffix, as load_spec's repair would give
            name, n = f"{f['name']}_{n}", n + 1
        taken.add(name)
        added.append({**f, "name": name})
    return added, used


# -- the diff ------------------------------------------------------------------------------------

def spec_diff(before: FormSpec, after: FormSpec) -> list[str]:
    """What differs, field by field (matched by name): '+ label (name): ...', '- ...', '~ label (name): a -> b'."""
    lines = []
    if before.title != after.title:
        lines.append(f"~ title: {before.title} -> {after.title}")
    old = {f.name: f for f in before.fields}
    new = {f.name: f for f in after.fields}
    for name, f in old.items():
        if name not in new:
            lines.append(f"- {f.label} ({name}): {field_rules(f, True)}")
    for name, f in new.items():
        was = old.get(name)
        if was is None:
            lines.append(f"+ {f.label} ({name}): {field_rules(f, True)}")
        elif was != f:
            changes = []
            if was.label != f.label:
                changes.append(f"label {was.label} -> {f.label}")
            if field_rules(was, True) != field_rules(f, True):
                changes.append(f"{field_rules(was, True)} -> {field_rules(f, True)}")
            if was.help != f.help:
                changes.append(f"help {was.help or '(none)'} -> {f.help or '(none)'}")
            lines.append(f"~ {f.label} ({name}): {'; '.join(changes)}")
    return lines
