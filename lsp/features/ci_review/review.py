"""One CI review: the change set, the analyzers, the model, merged into a report.

The model is loaded only when there is something for it to review: an empty diff, or a
run with `model=False`, needs no engine at all.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from loopcoder.engine.api import EngineAPI
from loopcoder.lsp.features.analyzers import run_analyzers
from loopcoder.lsp.features.findings import ReviewFinding, at_least, merge
from loopcoder.lsp.features.prompts import ActionOptions

from .diff import ChangedFile, ChangeSet
from .model_review import review_file

log = logging.getLogger(__name__)

FAIL_ON = ("error", "warning", "info", "never")


@dataclass
class Report:
    findings: list[ReviewFinding] = field(default_factory=list)
    files: list[str] = field(default_factory=list)  # the files reviewed
    notes: list[str] = field(default_factory=list)  # what the reader should know: a skipped hunk, a missing analyzer
    analyzers: list[str] = field(default_factory=list)  # those that ran, with versions: ["ruff 0.17.6"]
    model: str = ""  # the model that reviewed, "" when none did


@dataclass(frozen=True)
class ReviewOptions:
    model: bool = True  # ask the model; False: the analyzers alone
    analyzers: bool = True
    actions: ActionOptions = ActionOptions(max_new_tokens=384)


def review_changes(changes: ChangeSet, engine_factory: Callable[[], EngineAPI] | None,
                   options: ReviewOptions = ReviewOptions(), model_name: str = "",
                   progress: Callable[[str], None] | None = None) -> Report:
    report = Report(files=[f.path for f in changes.files])
    found: list[ReviewFinding] = []
    if options.analyzers:
        grounded, report.analyzers = analyzers_on_changed_lines(changes.files, changes.root, report.notes)
        found += grounded
    if options.model and changes.files and engine_factory is not None:
        engine = engine_factory()
        report.model = model_name
        root_uri = changes.root.resolve().as_uri()
        for i, changed in enumerate(changes.files, 1):
            if progress:
                progress(f"reviewing {changed.path} ({i}/{len(changes.files)}, {len(changed.hunks)} hunk(s))")
            on_file = [f for f in found if f.path == changed.path]
            found += review_file(engine, f"{root_uri}/{changed.path}#ci-review", changed, on_file, options.actions,
                                 report.notes)
    report.findings = merge(found)
    return report


def analyzers_on_changed_lines(files: list[ChangedFile], root: Path,
                               notes: list[str]) -> tuple[list[ReviewFinding], list[str]]:
    """The analyzers' findings on the lines the change set adds or changes, and the analyzers that ran."""
    found, ran = run_analyzers({f.path: f.text for f in files if f.text is not None}, root, notes)
    added = {f.path: f.added for f in files}
    return [f for f in found if f.line in added[f.path]], ran


def exit_status(report: Report, fail_on: str) -> int:
    """1 when a finding is at least as severe as `fail_on`, else 0 (errors of the run itself exit 2)."""
    if fail_on == "never":
        return 0
    return 1 if at_least(report.findings, fail_on) else 0
