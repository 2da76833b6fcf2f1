"""The JSON-schema check every front end runs before a constrained request is sent:
llguidance compiles the schema to its grammar. No torch, so `SamplingParams` validates
schemas in the thin clients too; `grammar.py` applies the grammar while decoding.
"""

from __future__ import annotations

import llguidance

from ..errors import InvalidRequestError

# Fixed separators, as json.dumps writes them, instead of free whitespace: a sampled model
# could otherwise spend its whole budget on newlines. A schema's "x-guidance" overrides these.
_JSON_OPTIONS = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}
# Without this, llguidance appends its parser state and the whole grammar to each message.
PARSER_LIMITS = llguidance.LLParserLimits(verbose_errors=False)


def json_schema_grammar(schema: object) -> str:
    """llguidance's grammar for a JSON schema; InvalidRequestError, with llguidance's reason, if it rejects it."""
    if not isinstance(schema, dict):
        raise InvalidRequestError(f"json_schema must be a JSON object (a dict), not {type(schema).__name__}")
    try:
        grammar = llguidance.LLMatcher.grammar_from_json_schema(schema, defaults=_JSON_OPTIONS)
    except ValueError as exc:  # a value JSON cannot hold, such as a set
        raise InvalidRequestError(f"json_schema is not JSON: {exc}") from exc
    is_error, messages = llguidance.LLMatcher.validate_grammar_with_warnings(grammar, limits=PARSER_LIMITS)
    if is_error:
        raise InvalidRequestError(f"json_schema is not supported: {messages[0]}")
    return grammar
