"""The model's answer in a review: the JSON schema it answers in, the answer read (also when
cut short), and its fixes indented like the lines they replace.

Shared by the editor's review (`review`) and the CI review (`ci_review.model_review`).
"""

from __future__ import annotations

import json
from typing import Any

from loopcoder.engine.api import CancelCheck, EngineAPI, Priority
from loopcoder.engine.errors import CancelledError
from loopcoder.engine.sampling import FinishReason, SamplingParams

from .findings import CATEGORIES, SEVERITIES
from .prompts import ActionOptions, Progress, token_counter

MAX_FINDINGS = 6
MAX_MESSAGE_CHARS = 200
MAX_REPLACEMENT_CHARS = 300


def finding_schema(first_line: int, last_line: int) -> dict[str, Any]:
    """The JSON schema a review answers in; line numbers are 1-based, as shown to the model."""
    return {
        "type": "object",
        "properties": {
            "findings": {
                "type": "array",
                "maxItems": MAX_FINDINGS,
                "items": {
                    "type": "object",
                    "properties": {
                        "line": {"type": "integer", "minimum": first_line, "maximum": last_line},
                        "severity": {"enum": list(SEVERITIES)},
                        "category": {"enum": list(CATEGORIES)},
                        "message": {"type": "string", "maxLength": MAX_MESSAGE_CHARS},
                        "replacement": {"type": ["string", "null"], "maxLength": MAX_REPLACEMENT_CHARS},
                    },
                    "required": ["line", "severity", "category", "message", "replacement"],
                    "additionalProperties": False,
                },
            }
        },
        "required": ["findings"],
        "additionalProperties": False,
    }


def findings_answer(engine: EngineAPI, key: str, ids: list[int], schema: dict, options: ActionOptions,
                    cancelled: CancelCheck | None = None, progress: Progress | None = None) -> tuple[dict, bool]:
    """The model's `{"findings": [...]}` answer under `schema`, and whether it was complete."""
    params = SamplingParams(max_new_tokens=options.max_new_tokens, temperature=options.temperature, json_schema=schema)
    result = engine.generate_for(key, ids, params, cancelled=cancelled, on_token=token_counter(progress),
                                 priority=Priority.ACTION)
    if result.finish_reason is FinishReason.CANCELLED:
        raise CancelledError(f"the review was cancelled after {len(result.token_ids)} tokens")
    complete = result.finish_reason is not FinishReason.LENGTH
    # Out of tokens mid-answer: the findings written out in full still count.
    return (json.loads(result.text) if complete else complete_findings(result.text)), complete


def complete_findings(text: str) -> dict:
    """The findings written out in full in a review answer cut short.

    The schema fixes the shape, `{"findings": [{...}, {...}, ...`, so the answer is cut
    after the last item closed at depth 2, and the list and object closed after it.
    """
    depth, in_string, escaped, last_item_end = 0, False, False, -1
    for i, ch in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
            if ch == "}" and depth == 2:
                last_item_end = i
    if last_item_end < 0:
        return {"findings": []}
    return json.loads(text[: last_item_end + 1] + "]}")


def indented_fix(replacement: str | None, original: str, indent: str) -> str | None:
    """The replacement for whole line(s), indented like them; None for no fix or one that changes nothing."""
    if replacement is None or not replacement.strip():
        return None
    body = replacement.rstrip().split("\n")
    first = body[0].lstrip()
    # The model often drops the indentation: put the original's back.
    fixed = "\n".join([indent + first] + [line if line.startswith(indent) else indent + line.lstrip() for line in body[1:]])
    return None if fixed.rstrip() == original.rstrip() else fixed
