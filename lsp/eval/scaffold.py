"""`loopcoder eval --kinds scaffold`: does the form spec hold the fields the sentence asked for?

The bundled set (data/scaffold_sentences.jsonl, Chinese and English, simple and messy) gives
each sentence's expected title and fields: label, type (a spec type, or `code` for a
record's identifier) and, for a choice, its choices. Each sentence goes through
`scaffold.describe`, with the model when one is given (it decides only what the sentence
leaves open) or without. A spec field matches an expected one when their labels are equal
after normalization (case, width, spaces, punctuation and a leading article ignored).

Scores, over all the fields of a set of sentences:
    recall     matched / expected           precision  matched / spec fields
    types      right type / matched         choices    right choices / expected choice fields
    right      matched with the right type and choices / expected: the issue's target is >= 95%
"""

from __future__ import annotations

import importlib.resources
import json
import re
import sys
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable, Iterable, Mapping

from loopcoder.engine.api import EngineAPI
from loopcoder.engine.errors import InvalidRequestError
from loopcoder.lsp.features.scaffold import describe

DATA_FILE = "data/scaffold_sentences.jsonl"
TARGET = 0.95
_ARTICLE = re.compile(r"^(?:the|an?)\s+", re.IGNORECASE)


def load_sentences() -> list[dict]:
    """The bundled sentences, each {"id", "sentence", "title", "fields": [{"label", "type", "choices"?}]}."""
    text = importlib.resources.files(__package__).joinpath(DATA_FILE).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def normalize(label: str) -> str:
    """A label as compared: NFKC, case-folded, without a leading article, spaces and punctuation."""
    text = _ARTICLE.sub("", unicodedata.normalize("NFKC", label).casefold().strip())
    return "".join(ch for ch in text if ch.isalnum())


def _choices(values: Iterable[str]) -> set[str]:
    return {normalize(v) for v in values}


def score_item(expected: Mapping, predicted: list[dict], title: str | None) -> dict:
    """The counts for one sentence: `predicted` holds the spec's fields as {"label", "type", "choices"}."""
    by_label = {normalize(f["label"]): f for f in predicted}
    counts = {"expected": len(expected["fields"]), "predicted": len(predicted), "matched": 0, "type_right": 0,
              "choice_expected": 0, "choice_right": 0, "right": 0, "missing": [], "wrong": []}
    for want in expected["fields"]:
        got = by_label.pop(normalize(want["label"]), None)
        is_choice = want["type"] == "choice"
        counts["choice_expected"] += is_choice
        if got is None:
            counts["missing"].append(want["label"])
            continue
        counts["matched"] += 1
        type_right = got["type"] == want["type"]
        choices_right = not is_choice or (type_right and _choices(got.get("choices", ())) == _choices(want["choices"]))
        counts["type_right"] += type_right
        counts["choice_right"] += is_choice and choices_right
        counts["right"] += type_right and choices_right
        if not (type_right and choices_right):
            counts["wrong"].append(f"{want['label']}: {got['type']} {got.get('choices', [])} "
                                   f"(expected {want['type']} {want.get('choices', [])})")
    counts["extra"] = [f["label"] for f in by_label.values()]
    counts["title_right"] = title is not None and normalize(title) == normalize(expected.get("title", ""))
    return counts


def evaluate_item(item: Mapping, engine: Callable[[], EngineAPI] | None) -> dict:
    """One JSONL row: the sentence, what the spec holds, and its counts."""
    start = time.perf_counter()
    try:
        described = describe(item["sentence"], engine)
    except InvalidRequestError as e:
        predicted, title, notes, model_used, error = [], None, [], False, str(e)
    else:
        spec = described.loaded.spec
        predicted = [{"label": f.label, "type": kind, **({"choices": f.choices} if f.choices else {})}
                     for f, kind in zip(spec.fields, described.kinds)]
        title, notes, model_used, error = spec.title, list(described.notes), described.model_used, ""
    return {"id": item["id"], "sentence": item["sentence"], "title": title, "fields": predicted, "notes": notes,
            "model_used": model_used, "error": error, "seconds": round(time.perf_counter() - start, 3),
            **score_item(item, predicted, title)}


@dataclass
class Totals:
    name: str
    sentences: int = 0
    expected: int = 0
    predicted: int = 0
    matched: int = 0
    type_right: int = 0
    choice_expected: int = 0
    choice_right: int = 0
    right: int = 0
    title_right: int = 0

    def add(self, row: Mapping) -> None:
        self.sentences += 1
        for key in ("expected", "predicted", "matched", "type_right", "choice_expected", "choice_right", "right",
                    "title_right"):
            setattr(self, key, getattr(self, key) + int(row[key]))


def totals(rows: list[Mapping]) -> list[Totals]:
    """Totals for the Chinese sentences, the English ones and all (ids start with zh- or en-)."""
    groups = [Totals("zh"), Totals("en"), Totals("all")]
    for row in rows:
        for group in groups:
            if group.name == "all" or row["id"].startswith(group.name + "-"):
                group.add(row)
    return [g for g in groups if g.sentences]


def _rate(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "—"


def markdown_table(groups: list[Totals]) -> str:
    header = ["set", "sentences", "fields", "recall", "precision", "types", "choices", "titles",
              f"right (target ≥{TARGET:.0%})"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for g in groups:
        lines.append("| " + " | ".join([
            g.name, str(g.sentences), str(g.expected), _rate(g.matched, g.expected), _rate(g.matched, g.predicted),
            _rate(g.type_right, g.matched), _rate(g.choice_right, g.choice_expected), _rate(g.title_right, g.sentences),
            _rate(g.right, g.expected)]) + " |")
    return "\n".join(lines)


def run_scaffold_eval(items: list[Mapping], engine: Callable[[], EngineAPI] | None, title: str,
                      out: Path | None = None, stdout: IO[str] | None = None) -> list[dict]:
    """Evaluate `items`, write the rows to `out` (JSONL) and print the table (with the misses) to `stdout`."""
    stdout = stdout or sys.stdout
    rows = [evaluate_item(item, engine) for item in items]
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    print(f"### {title}\n\n{markdown_table(totals(rows))}\n", file=stdout)
    for row in rows:
        misses = ([f"missing {label}" for label in row["missing"]] + [f"extra {label}" for label in row["extra"]]
                  + row["wrong"] + ([row["error"]] if row["error"] else []))
        if misses:
            print(f"- {row['id']}: " + "; ".join(misses), file=stdout)
    return rows
