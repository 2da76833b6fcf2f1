"""One CI review: the change set, the analyzers, the model, merged into a report.

The model is loaded only when there is something for it to review: an empty diff, or a
run with `model=False`, needs no engine at all.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

from loopcoder.engine.engine import EngineAPI
from loopcoder.lsp.features.actions import ActionOptions

from .analyzers import run_analyzers
from .diff import ChangeSet
from .findings import Report, ReviewFinding, at_least, merge
from .model_review import review_file

log = logging.getLogger(__name__)

FAIL_ON = ("error", "warning", "info", "never")


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
        grounded, report.analyzers = run_analyzers(changes.files, changes.root, report.notes)
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


def exit_status(report: Report, fail_on: str) -> int:
    """1 when a finding is at least as severe as `fail_on`, else 0 (errors of the run itself exit 2)."""
    if fail_on == "never":
        return 0
    return 1 if at_least(report.findings, fail_on) else 0
