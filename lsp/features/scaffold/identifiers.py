"""Safe code identifiers for form fields: ASCII snake_case, never a keyword, never a clash.

A field's `name` becomes a Python attribute, a SQL column, a JSON key and an HTML
`name`, so it must be safe in all four at once. `safe_identifier` turns anything (a
model's guess, a user's label in any language) into such a name; `unique_names` then
settles clashes deterministically, in field order.

Chinese labels are transliterated with pypinyin (pure Python, with its own dictionary):
"故障类型" -> "gu_zhang_lei_xing". Other scripts fall back to their Unicode
decomposition (accents dropped), and to `field_<n>` when nothing ASCII is left.
"""

from __future__ import annotations

import keyword
import re
import unicodedata

IDENTIFIER = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*")
MAX_LENGTH = 40

# SQLite's keywords (https://sqlite.org/lang_keywords.html), lower-cased: any of them as a
# column name would need quoting in every query a user writes by hand.
SQL_KEYWORDS = frozenset("""
abort action add after all alter always analyze and as asc attach autoincrement before begin between by cascade
case cast check collate column commit conflict constraint create cross current current_date current_time
current_timestamp database default deferrable deferred delete desc detach distinct do drop each else end escape
except exclude exclusive exists explain fail filter first following for foreign from full generated glob group
groups having if ignore immediate in index indexed initially inner insert instead intersect into is isnull join key
last left like limit match materialized natural no not nothing notnull null nulls of offset on or order others outer
over partition plan pragma preceding primary query raise range recursive references regexp reindex release rename
replace restrict returning right rollback row rows savepoint select set table temp temporary then ties to transaction
trigger unbounded union unique update using vacuum values view virtual when where window with without
""".split())
# Names the generated code already uses: the primary key and SQLite's row-id aliases, the
# SQLAlchemy declarative base's attributes, and pydantic BaseModel's public methods.
GENERATED_CODE_NAMES = frozenset("""
id rowid oid metadata registry
construct copy dict json parse_obj parse_raw parse_file from_orm schema schema_json validate update_forward_refs
""".split())
RESERVED = SQL_KEYWORDS | GENERATED_CODE_NAMES | frozenset(keyword.kwlist)


def is_safe(name: str) -> bool:
    """True for a name that needs no repair."""
    return (len(name) <= MAX_LENGTH and IDENTIFIER.fullmatch(name) is not None and name not in RESERVED
            and not name.startswith("model_"))  # pydantic keeps model_* for itself


def transliterate(text: str) -> str:
    """ASCII words for `text`: pinyin for Han characters, accents dropped elsewhere, separated by spaces."""
    from pypinyin import Style, lazy_pinyin

    # lazy_pinyin leaves non-Han runs whole; spaces keep syllables apart.
    parts = lazy_pinyin(text, style=Style.NORMAL, errors=lambda chars: chars)
    spaced = " ".join(parts)
    return unicodedata.normalize("NFKD", spaced).encode("ascii", "ignore").decode("ascii")


def snake_case(text: str) -> str:
    """`text` as lower snake_case ASCII, or "" when no letter or digit survives."""
    text = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", text)  # camelCase -> camel_Case
    words = re.findall(r"[a-z0-9]+", text.lower())
    return "_".join(words)


def safe_identifier(candidate: str, label: str = "", position: int = 1) -> str:
    """A safe identifier: from `candidate` if usable, else transliterated from `label`, else `field_<position>`.

    "Usable" means ASCII letters survive: a candidate in Chinese, or empty, falls through to
    the label. A keyword or generated-code name gets `_field` appended; a leading digit
    gets `field_` prepended; the result is cut to MAX_LENGTH at a word boundary.
    """
    for source in (candidate, transliterate(label) if label else ""):
        name = snake_case(source) if source.isascii() else ""
        if re.search(r"[a-z]", name):
            return _fix(name)
    return f"field_{position}"


def _fix(name: str) -> str:
    if name[0].isdigit():
        name = f"field_{name}"
    if name.startswith("model_"):
        name = f"field_{name}"
    if len(name) > MAX_LENGTH:
        name = name[:MAX_LENGTH].rstrip("_")
        if "_" in name[MAX_LENGTH - 8:]:  # do not leave half a word
            name = name[: name.rindex("_")]
    if name in RESERVED:
        name = f"{name}_field"
    return name


def unique_names(names: list[str]) -> list[str]:
    """`names` with clashes settled: the second `code` becomes `code_2`, and so on, in order."""
    taken: set[str] = set()
    result = []
    for name in names:
        unique, n = name, 1
        while unique in taken:
            n += 1
            suffix = f"_{n}"
            unique = name[: MAX_LENGTH - len(suffix)].rstrip("_") + suffix
        taken.add(unique)
        result.append(unique)
    return result
