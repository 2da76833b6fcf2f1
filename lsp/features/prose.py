"""Cleaning a small model's prose: sentences or paragraphs it repeats, a sentence it did not finish,
a dangling lead-in.

Shared by the hint (`hints`), the review's messages (`review`, `ci_review`) and the
explanations (`actions`, `tracebacks`).
"""

from __future__ import annotations

import re


def drop_repeats(text: str) -> str:
    """`text` without sentences that say again, word for word, what an earlier one said
    (small models loop; a reader should not have to)."""
    seen: set[str] = set()
    kept: list[str] = []
    for sentence in re.split(r"(?<=[.?!])\s+(?=\S)", text):
        normal = " ".join(sentence.split()).lower()
        if normal and normal in seen:
            continue
        seen.add(normal)
        kept.append(sentence)
    return " ".join(kept)


def drop_lead_in(text: str) -> str:
    """`text` without a last sentence that introduces what decoding stopped before ("Here is a faster way:")."""
    head, _, last = text.rpartition("\n") if "\n" in text else ("", "", text)
    sentences = re.split(r"(?<=[.?!])\s+(?=\S)", last)
    if sentences and sentences[-1].rstrip().endswith(":"):
        sentences.pop()
    return (head + "\n" + " ".join(sentences) if head else " ".join(sentences)).strip()


def whole_sentences(text: str) -> str:
    """`text` up to its last finished sentence (a hint cut off mid-sentence reads badly)."""
    ends = [m.end() for m in re.finditer(r"[.?!](?=\s|$)", text)]
    return text[: ends[-1]].strip() if ends else text.strip()



def drop_repeat_paragraphs(markdown: str) -> str:
    """`markdown` without paragraphs or lines that repeat an earlier one word for word."""
    seen: set[str] = set()
    kept: list[str] = []
    for line in markdown.split("\n"):
        normal = " ".join(line.split()).lower()
        if len(normal) > 20 and normal in seen:  # short lines (fences, "```", bullets) may repeat
            continue
        seen.add(normal)
        kept.append(line)
    return re.sub(r"\n{3,}", "\n\n", "\n".join(kept)).strip()
