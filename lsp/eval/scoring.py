"""pass@1 per task kind, with a 95% Wilson score interval, and the markdown table that shows it.

Greedy decoding gives one candidate per task, so pass@1 is the fraction that passed. The
Wilson interval stays inside [0, 1] and is honest at small n and at rates near 0 or 1,
where the normal approximation is not.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from .tasks import KINDS

Z_95 = 1.959963984540054  # the standard normal's 97.5th percentile
STATUSES = ("passed", "failed", "timeout", "memory", "error")


def wilson_interval(passed: int, total: int, z: float = Z_95) -> tuple[float, float]:
    """The (low, high) Wilson score interval of a rate passed/total; (0, 1) when total is 0."""
    if not 0 <= passed <= total:
        raise ValueError(f"passed={passed} must lie in 0..total={total}")
    if total == 0:
        return 0.0, 1.0
    p = passed / total
    z2 = z * z
    centre = (p + z2 / (2 * total)) / (1 + z2 / total)
    half = z * math.sqrt(p * (1 - p) / total + z2 / (4 * total * total)) / (1 + z2 / total)
    # Exactly 0 or 1 at the ends, where rounding would leave 1e-16 of slack.
    return (0.0 if passed == 0 else centre - half), (1.0 if passed == total else centre + half)


@dataclass
class KindScore:
    kind: str
    total: int = 0
    statuses: Counter = field(default_factory=Counter)
    seconds: float = 0.0  # generation time, summed
    generated_tokens: int = 0

    @property
    def passed(self) -> int:
        return self.statuses["passed"]

    @property
    def pass_at_1(self) -> float:
        return self.passed / self.total if self.total else float("nan")

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.passed, self.total)


def score(rows: Iterable[Mapping]) -> list[KindScore]:
    """One KindScore per kind met in `rows` (the JSONL rows: kind, status, seconds, generated_tokens), in KINDS order."""
    scores: dict[str, KindScore] = {}
    for row in rows:
        kind = scores.setdefault(row["kind"], KindScore(row["kind"]))
        kind.total += 1
        kind.statuses[row["status"]] += 1
        kind.seconds += row.get("seconds", 0.0)
        kind.generated_tokens += row.get("generated_tokens", 0)
    order = {kind: i for i, kind in enumerate(KINDS)}
    return sorted(scores.values(), key=lambda s: (order.get(s.kind, len(order)), s.kind))


def markdown_summary(scores: list[KindScore]) -> str:
    header = ["kind", "tasks", "passed", "pass@1", "95% CI", "failed", "timeout", "memory", "error", "gen s/task"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for s in scores:
        low, high = s.interval
        lines.append("| " + " | ".join([
            s.kind, str(s.total), str(s.passed), f"{100 * s.pass_at_1:.1f}%", f"{100 * low:.1f}–{100 * high:.1f}%",
            *(str(s.statuses[status]) for status in STATUSES[1:]),
            f"{s.seconds / s.total:.2f}" if s.total else "—",
        ]) + " |")
    return "\n".join(lines)
