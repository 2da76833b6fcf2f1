"""The editor's review of a document or a selection, grounded the way `loopcoder review`
grounds a CI review. One implementation for every front end: the language server's
`loopcoder.review` (and so `loopcoder demo`) and the notebook extension's review of a cell.

1. ruff and bandit (`analyzers`) run on the document's text, with the ruff settings of
   the workspace it lies in; their findings on the reviewed lines are shown to the model
   after the code;
2. the model answers under a JSON schema: for each problem its line, the code it is
   about copied from that line (`quote`), a severity, a category, a sentence, and
   perhaps a corrected line;
3. a model finding stays where an analyzer found something of its category on its line,
   or where its quote is on its line; a quote found on another line of the review moves
   it there; a finding neither supports is dropped (a small model copies its worked
   example onto lines it does not fit);
4. the analyzers' and the model's findings are merged as the CI review merges them
   (`findings.merge`);
5. a finding keeps a fix only where it is sound (`quick_fixes`): for SQL built from
   strings, the parameterized query derived from the code.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from loopcoder.engine.api import CancelCheck, EngineAPI

from .analyzers import PYTHON_SUFFIXES, ruff_settings_folder, run_analyzers
from .findings import SEVERITIES, ReviewFinding, merge
from .findings_answer import finding_schema, findings_answer, indented_fix
from .prompts import ActionOptions, Progress, Span, chat_ids, checked_span, fit_prompt, lines_of, numbered
from .prose import drop_repeats, whole_sentences
from .quick_fixes import quick_fix

MAX_QUOTE_CHARS = 160
# What ruff cannot judge in one notebook cell: names imported, defined or used in other cells, top-level await.
CELL_BLIND_RULES = {"ruff:F401", "ruff:F811", "ruff:F821", "ruff:F704", "ruff:PLE1142"}
_IPYTHON_LINE = re.compile(r"^(\s*)((?:[\w.]+\s*=\s*)?[%!].*)$")  # %magic, !shell, x = !shell
_CODE_WORD = re.compile(r"\w")

REVIEW_SYSTEM = (
    "You are a meticulous senior code reviewer. Report only real problems: security "
    "(SQL or shell commands built from user input, unsafe deserialization, secrets in code), "
    "bugs, performance, and style. For each problem give the line number as shown, the code it is about "
    "copied exactly from that line as `quote`, a severity, a category, one sentence saying what is wrong and why, "
    "and, when one line can fix it, that corrected line as `replacement` (else null). For SQL injection the fix is a "
    "parameterized query. Static analyzers' findings, when there are any, are listed after the code: explain each "
    "one that is real and propose its fix. Report at most five problems, most severe first, each message one short "
    "sentence. Answer with JSON only."
)
# One worked exchange: it shows the answer's shape and length better than any instruction.
REVIEW_EXAMPLES = ((
    "Review this python code (line numbers on the left):\n\n"
    "1 | import os\n2 | \n3 | def list_dir(user_path):\n4 |     os.system(\"ls \" + user_path)\n5 |     return True"
    "\n\nStatic analyzers on these lines:\n- line 4: bandit:B605 Starting a process with a shell, possible injection "
    "detected, security issue.",
    json.dumps({"findings": [
        {"line": 4, "quote": "os.system(\"ls \" + user_path)", "severity": "error", "category": "security",
         "message": "The shell command is built from user input, which allows command injection.",
         "replacement": "subprocess.run([\"ls\", user_path], check=True)"},
        {"line": 5, "quote": "return True", "severity": "info", "category": "style",
         "message": "The function always returns True, so the result says nothing.", "replacement": None},
    ]}, separators=(", ", ": ")),
),)


@dataclass(frozen=True)
class Finding:
    line: int  # 0-based
    start: int  # characters into the line: the code, without its indentation
    end: int
    severity: str
    category: str
    message: str
    replacement: str | None  # the whole corrected line, indented; None when there is no sound fix
    original: str  # the line as it was when reviewed: relocates the finding after edits
    rules: tuple[str, ...] = ()  # the analyzer rules behind it, e.g. ("bandit:B608",); () for the model alone

    def as_json(self) -> dict[str, Any]:
        return {"line": self.line, "start": self.start, "end": self.end, "severity": self.severity,
                "category": self.category, "message": self.message, "replacement": self.replacement,
                "rules": list(self.rules)}


@dataclass(frozen=True)
class Review:
    findings: list[Finding]
    complete: bool  # False: the token budget ran out; `findings` are those the model finished
    notes: list[str] = field(default_factory=list)  # what the user should know: an analyzer missing or failing
    analyzers: list[str] = field(default_factory=list)  # those that ran, with versions: ["ruff 0.17.6", ...]


@dataclass(frozen=True)
class DocumentOrigin:
    """Where a reviewed text comes from, as far as the analyzers care."""

    path: Path | None = None  # the file on disk, whose workspace's ruff settings apply; None: an unsaved buffer
    notebook_cell: bool = False  # one cell of a notebook: names may come from other cells, lines may be magics

    def analyzed_as(self) -> tuple[str, Path | None]:
        """The file name the analyzers see the text under, relative to the folder whose ruff settings
        apply (None: ruff's defaults)."""
        if self.path is None:
            return "document.py", None
        path = self.path.absolute()
        settings = ruff_settings_folder(path)
        name = path.relative_to(settings) if settings else Path(path.name)
        if name.suffix not in PYTHON_SUFFIXES:  # a notebook's cell, an untitled buffer: Python text all the same
            name = name.with_suffix(".py")
        return name.as_posix(), settings


def review(engine: EngineAPI, key: str, text: str, span: Span | None = None, language: str = "",
           options: ActionOptions = ActionOptions(), cancelled: CancelCheck | None = None,
           progress: Progress | None = None, origin: DocumentOrigin = DocumentOrigin()) -> Review:
    """Findings about lines `span` of `text` (the whole text when None), most severe first."""
    lines = lines_of(text)
    span = checked_span(lines, span)
    python = language == "python" or (not language and origin.path is not None
                                      and origin.path.suffix in PYTHON_SUFFIXES)
    analyzed = analyzable(lines, origin.notebook_cell)  # what the analyzers and the parser see
    name, settings = origin.analyzed_as()
    notes: list[str] = []
    grounded, ran = analyzer_findings(name, "\n".join(analyzed), settings, origin.notebook_cell, notes) \
        if python else ([], [])
    grounded = [f for f in grounded if span.first < f.line <= span.last + 1]
    value, complete = model_answer(engine, key, lines, span, language, grounded, options, cancelled, progress)
    merged = merge(grounded + model_findings(value, lines, span, grounded, name))
    found = [editor_finding(f, lines, analyzed, "python" if python else language) for f in merged]
    order = {s: i for i, s in enumerate(SEVERITIES)}
    return Review(sorted(found, key=lambda f: (order[f.severity], f.line)), complete, notes, ran)


def model_answer(engine: EngineAPI, key: str, lines: list[str], span: Span, language: str,
                 grounded: list[ReviewFinding], options: ActionOptions, cancelled: CancelCheck | None,
                 progress: Progress | None) -> tuple[dict, bool]:
    """The model's findings on lines `span`, shown with the analyzers' findings, and whether it finished."""
    what = f"{language} code" if language else "code"
    material = numbered(lines[span.first : span.last + 1], span.first) + grounding(grounded)
    ids = fit_prompt(engine, chat_ids(engine, REVIEW_SYSTEM, f"Review this {what} (line numbers on the left):\n\n",
                                      material, examples=REVIEW_EXAMPLES), options, "this review")
    schema = review_schema(span.first + 1, span.last + 1)
    return findings_answer(engine, f"{key}#review", ids, schema, options, cancelled, progress)


def review_schema(first_line: int, last_line: int) -> dict[str, Any]:
    """The CI review's finding schema with the model's `quote` after the line (1-based, as shown)."""
    schema = finding_schema(first_line, last_line)
    item = schema["properties"]["findings"]["items"]
    props = item["properties"]
    item["properties"] = {"line": props["line"], "quote": {"type": "string", "maxLength": MAX_QUOTE_CHARS},
                          **{k: v for k, v in props.items() if k != "line"}}
    item["required"] = ["line", "quote", *[k for k in item["required"] if k != "line"]]
    return schema


def analyzable(lines: list[str], notebook_cell: bool) -> list[str]:
    """`lines` as the analyzers and the parser should see them: a cell's IPython lines (`%time`, `!pip`)
    commented out, every line in its place."""
    if not notebook_cell:
        return lines
    return [_IPYTHON_LINE.sub(r"\1# \2", line) for line in lines]


def analyzer_findings(name: str, text: str, settings: Path | None, notebook_cell: bool,
                      notes: list[str]) -> tuple[list[ReviewFinding], list[str]]:
    """ruff's and bandit's findings on the document, as file `name` under `settings`, and those that ran."""
    found, ran = run_analyzers({name: text}, settings, notes)
    if notebook_cell:
        found = [f for f in found if not CELL_BLIND_RULES & set(f.rules)]
    return found, ran


def grounding(found: list[ReviewFinding]) -> str:
    """The analyzers' findings as the model reads them after the code."""
    if not found:
        return ""
    return "\n\nStatic analyzers on these lines:\n" + "\n".join(
        f"- line {f.line}: {', '.join(f.rules)} {f.message}" for f in sorted(found, key=lambda f: f.line))


def model_findings(value: dict, lines: list[str], span: Span, grounded: list[ReviewFinding],
                   name: str) -> list[ReviewFinding]:
    """The model's (schema-valid) answer as findings: each on a line an analyzer or its own quote
    supports, else dropped; messages cleaned, deduplicated, fixes indented."""
    backed = {(f.line - 1, f.category) for f in grounded}
    found: list[ReviewFinding] = []
    seen: set[tuple[int, str]] = set()
    for item in value["findings"]:
        line = item["line"] - 1
        if (line, item["category"]) not in backed:
            line = quoted_line(lines, line, item.get("quote") or "", span)
            if line is None:
                continue
        message = whole_sentences(drop_repeats(" ".join(item["message"].split())))  # small models loop
        if not message or (line, message) in seen:
            continue
        seen.add((line, message))
        original = lines[line]
        indent = original[: len(original) - len(original.lstrip())]
        found.append(ReviewFinding(name, line + 1, line + 1, item["severity"], item["category"], message,
                                   indented_fix(item["replacement"], original, indent)))
    return found


def quoted_line(lines: list[str], line: int, quote: str, span: Span) -> int | None:
    """The line of `span` that holds the first line of `quote` (runs of whitespace count as one
    space): `line` itself, else the nearest one; None when none does, or the quote holds no code."""
    wanted = " ".join(next((part for part in quote.splitlines() if part.strip()), "").split())
    if not _CODE_WORD.search(wanted):
        return None
    holding = [i for i in range(span.first, span.last + 1) if wanted in " ".join(lines[i].split())]
    return min(holding, key=lambda i: (abs(i - line), i), default=None)


def editor_finding(f: ReviewFinding, lines: list[str], analyzed: list[str], language: str) -> Finding:
    """A merged finding as the editor shows it: on the code of its first line, with a fix only where it is sound."""
    line = f.line - 1
    original = lines[line]
    indent = len(original) - len(original.lstrip())
    start, end = indent, len(original.rstrip())
    if end <= start:  # a blank line: mark its end
        start = end = len(original)
    return Finding(line, start, end, f.severity, f.category, f.message, quick_fix(analyzed, f, language), original,
                   f.rules)


def relocate(findings: list[Finding], text: str) -> list[Finding]:
    """The findings still valid in the edited `text`: each follows its line (nearest identical
    line to where it was); one whose line was changed or deleted is dropped."""
    lines = lines_of(text)
    moved = []
    for f in findings:
        if f.line < len(lines) and lines[f.line] == f.original:
            moved.append(f)
            continue
        candidates = [i for i, line in enumerate(lines) if line == f.original]
        if candidates:
            moved.append(replace(f, line=min(candidates, key=lambda i: abs(i - f.line))))
    return moved
