"""The model's review of one file's hunks: one JSON-constrained answer per hunk.

Every hunk of a file goes through one engine session (`<file uri>#ci-review`), and its
prompt puts what the hunks share first: the instructions, the file's path and its
imports; then the hunk's scope, with the changed lines marked. So the second hunk of a
file reuses the K/V of the first one's prefix. The schema lets a finding point only at
the hunk's new lines (an `enum` of their numbers), so a finding can never land on a
line the change did not touch; the analyzers' findings on those lines are shown to the
model, which explains them and proposes fixes.
"""

from __future__ import annotations

import json
from typing import Callable

from loopcoder.engine.api import EngineAPI
from loopcoder.engine.errors import InvalidRequestError
from loopcoder.lsp.features.findings import ReviewFinding
from loopcoder.lsp.features.findings_answer import finding_schema, findings_answer, indented_fix
from loopcoder.lsp.features.prompts import ActionOptions, chat_ids, fit_prompt
from loopcoder.lsp.features.prose import drop_repeats, whole_sentences

from .context import hunk_context, language_of
from .diff import ChangedFile, DiffLine, Hunk

CI_REVIEW_SYSTEM = (
    "You are a meticulous senior code reviewer of pull requests. Review only the changed lines, marked `+`; "
    "the other lines are context. Report only real problems: security (SQL or shell commands built from input, "
    "unsafe deserialization, secrets in code), bugs, performance (work repeated in loops, quadratic scans), "
    "and style. For each problem give the first and last changed line it is about, a severity, a category, one "
    "short sentence saying what is wrong and why, and, when a few lines can fix it, the corrected lines as "
    "`replacement` (else null). Static analyzers' findings on the changed lines are listed after the code: "
    "explain each one that is real and propose its fix. Report at most five problems. Answer with JSON only."
)
EXAMPLE = (
    "Review the change to tools/files.py (python). Its imports:\n\nimport os\n\nfunction list_dir, "
    "new line numbers on the left:\n\n3   | def list_dir(user_path):\n4 + |     os.system(\"ls \" + user_path)\n"
    "5 + |     return True\n\nStatic analyzers on the changed lines:\n- line 4: bandit:B605 Starting a process "
    "with a shell, possible injection detected.",
    json.dumps({"findings": [
        {"line": 4, "end_line": 4, "severity": "error", "category": "security",
         "message": "The shell command is built from user input, which allows command injection.",
         "replacement": "    subprocess.run([\"ls\", user_path], check=True)"},
        {"line": 5, "end_line": 5, "severity": "info", "category": "style",
         "message": "The function always returns True, so the result says nothing.", "replacement": None},
    ]}, separators=(", ", ": ")),
)

Progress = Callable[[int], None]


def hunk_schema(hunk: Hunk) -> dict:
    """The editor review's schema, with lines limited to the hunk's new lines and a last line added."""
    schema = finding_schema(hunk.first, max(hunk.last, hunk.first))
    item = schema["properties"]["findings"]["items"]
    props = item["properties"]
    added = {"enum": list(hunk.added)}
    item["properties"] = {"line": added, "end_line": added, **{k: v for k, v in props.items() if k != "line"}}
    item["required"] = ["line", "end_line", *[k for k in item["required"] if k != "line"]]
    return schema


def hunk_prompt(changed: ChangedFile, hunk: Hunk, analyzer_findings: list[ReviewFinding]) -> tuple[str, str]:
    """(instruction, material): the material is the user's code and goes into the prompt as plain text."""
    language = language_of(changed.path)
    context = hunk_context(changed.path, changed.text, hunk)
    shown = _context_lines(changed.text, context.first, context.last, hunk) if context else list(hunk.lines)
    width = len(str(max((line.new_line or 0 for line in shown), default=1)))
    imports = "\n".join(context.imports) if context and context.imports else "(none shown)"
    scope = context.scope if context else "the hunk"
    body = "\n".join(f"{'' if line.new_line is None else line.new_line:>{width}} {line.kind} | {line.text}"
                     for line in shown)
    material = f"{imports}\n\n{scope}, new line numbers on the left:\n\n{body}"
    if analyzer_findings:
        material += "\n\nStatic analyzers on the changed lines:\n" + "\n".join(
            f"- line {f.line}: {', '.join(f.rules)} {f.message}" for f in analyzer_findings)
    instruction = f"Review the change to {changed.path}" + (f" ({language})" if language else "") + ". Its imports:\n\n"
    return instruction, material


def _context_lines(text: str, first: int, last: int, hunk: Hunk):
    """Lines first..last of the new file, marked `+` where the hunk adds them, with its removed lines in place."""
    lines = text.splitlines()
    added = set(hunk.added)
    removed_before: dict[int, list[DiffLine]] = {}
    next_new = hunk.first
    for line in hunk.lines:
        if line.kind == "-":
            removed_before.setdefault(next_new, []).append(line)
        elif line.new_line is not None:
            next_new = line.new_line + 1
    shown = []
    for n in range(first, last + 1):
        shown += removed_before.get(n, [])
        shown.append(DiffLine("+" if n in added else " ", n, lines[n - 1] if n <= len(lines) else ""))
    return shown


def review_file(engine: EngineAPI, key: str, changed: ChangedFile, analyzer_findings: list[ReviewFinding],
                options: ActionOptions, notes: list[str], progress: Progress | None = None) -> list[ReviewFinding]:
    """The model's findings on every hunk of `changed`, in one engine session `key`."""
    found: list[ReviewFinding] = []
    new_lines = (changed.text or "").splitlines()
    for hunk in changed.hunks:
        on_hunk = [f for f in analyzer_findings if f.line in hunk.added]
        instruction, material = hunk_prompt(changed, hunk, on_hunk)
        try:
            ids = fit_prompt(engine, chat_ids(engine, CI_REVIEW_SYSTEM, instruction, material, examples=(EXAMPLE,)),
                        options, f"the review of {changed.path} lines {hunk.first}-{hunk.last}")
        except InvalidRequestError as e:
            notes.append(f"{changed.path}:{hunk.first}: not reviewed by the model: {e}")
            continue
        value, complete = findings_answer(engine, key, ids, hunk_schema(hunk), options, progress=progress)
        if not complete:
            notes.append(f"{changed.path}:{hunk.first}: the model ran out of tokens (--max-tokens "
                         f"{options.max_new_tokens}); kept the findings it finished")
        found += findings_of(value, changed.path, hunk, new_lines)
    return found


def findings_of(value: dict, path: str, hunk: Hunk, new_lines: list[str]) -> list[ReviewFinding]:
    """The model's (schema-valid) answer as findings: ranges checked to lie in the hunk, fixes indented."""
    added = set(hunk.added)
    texts = {line.new_line: line.text for line in hunk.lines if line.new_line is not None}
    found = []
    for item in value["findings"]:
        first, last = sorted((item["line"], item["end_line"]))
        message = whole_sentences(drop_repeats(" ".join(item["message"].split())))  # small models loop
        if first not in added or last not in added or not message:  # the schema says so; a remote server may not
            continue
        original = [texts.get(n) or (new_lines[n - 1] if n <= len(new_lines) else "") for n in range(first, last + 1)]
        indent = original[0][: len(original[0]) - len(original[0].lstrip())]
        replacement = indented_fix(item["replacement"], "\n".join(original), indent)
        found.append(ReviewFinding(path, first, last, item["severity"], item["category"], message, replacement))
    return found
