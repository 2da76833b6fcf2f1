"""The one finding type of a review, whoever found it (the model, ruff, bandit), and merging.

Both reviews use it: `loopcoder review` in CI (`ci_review`) and the editor's review
(`review`), so a finding the analyzers and the model agree on reads the same in both.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

SEVERITIES = ("error", "warning", "info")
CATEGORIES = ("security", "bug", "performance", "style")
SEVERITY_RANK = {s: len(SEVERITIES) - i for i, s in enumerate(SEVERITIES)}  # error 3, warning 2, info 1


@dataclass(frozen=True)
class ReviewFinding:
    path: str  # relative to the repository root, '/'-separated (the editor: the document's name)
    line: int  # 1-based, in the new file
    end_line: int  # inclusive; == line for one line
    severity: str  # one of SEVERITIES
    category: str  # one of CATEGORIES
    message: str
    replacement: str | None = None  # replaces lines line..end_line ("" deletes them); None: no fix
    rules: tuple[str, ...] = ()  # analyzer rule ids, e.g. ("bandit:B608",); () for the model alone
    sources: tuple[str, ...] = ("loopcoder",)  # who found it: loopcoder, ruff, bandit
    help_uri: str = ""

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES or self.category not in CATEGORIES:
            raise ValueError(f"bad severity/category {self.severity!r}/{self.category!r}")
        if not 1 <= self.line <= self.end_line:
            raise ValueError(f"bad line range {self.line}..{self.end_line}")

    @property
    def rule_id(self) -> str:
        """The SARIF rule: the first analyzer rule, else the model's category (`loopcoder/security`)."""
        return self.rules[0] if self.rules else f"loopcoder/{self.category}"

    def as_json(self) -> dict:
        return {"path": self.path, "line": self.line, "end_line": self.end_line, "severity": self.severity,
                "category": self.category, "message": self.message, "replacement": self.replacement,
                "rules": list(self.rules), "sources": list(self.sources)}


def merge(findings: list[ReviewFinding]) -> list[ReviewFinding]:
    """One finding per (path, first line, category): an analyzer's rule and the model's words and fix
    are combined; the higher severity wins. Sorted by path, line, then severity."""
    merged: dict[tuple[str, int, str], ReviewFinding] = {}
    for f in findings:
        key = (f.path, f.line, f.category)
        merged[key] = _combine(merged[key], f) if key in merged else f
    return sorted(merged.values(), key=lambda f: (f.path, f.line, -SEVERITY_RANK[f.severity], f.category))


def _combine(a: ReviewFinding, b: ReviewFinding) -> ReviewFinding:
    # The model's sentence explains; an analyzer's message names the rule. Keep the model's when there is one.
    model_first = sorted((a, b), key=lambda f: "loopcoder" not in f.sources)
    message = model_first[0].message
    other = model_first[1].message
    if other.lower() not in message.lower() and "loopcoder" not in model_first[1].sources:
        message = f"{message} ({', '.join(model_first[1].rules) or 'analyzer'}: {other})"
    replacement = next((f.replacement for f in model_first if f.replacement is not None), None)
    end_line = next(f.end_line for f in model_first if f.replacement == replacement) if replacement is not None \
        else max(a.end_line, b.end_line)
    return replace(a, end_line=end_line, severity=max(a.severity, b.severity, key=SEVERITY_RANK.get),
                   message=message, replacement=replacement, rules=_union(a.rules, b.rules),
                   sources=_union(a.sources, b.sources), help_uri=a.help_uri or b.help_uri)


def _union(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(a + b))


def at_least(findings: list[ReviewFinding], severity: str) -> list[ReviewFinding]:
    return [f for f in findings if SEVERITY_RANK[f.severity] >= SEVERITY_RANK[severity]]

