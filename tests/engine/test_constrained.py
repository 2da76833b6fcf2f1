"""Constrained decoding: whatever the model samples, the output parses and validates under its schema.

Outputs are checked independently of the engine: `jsonschema` validates the parsed value,
and a matcher built here, straight from llguidance, replays the generated tokens.
"""

from __future__ import annotations

import random

import jsonschema
import llguidance
import numpy as np
import pytest
import sentencepiece as spm
import torch

from loopcoder.engine.engine import Engine, EngineConfig
from loopcoder.engine.errors import (
    CancelledError,
    ConstrainedDecodingError,
    IncompleteOutputError,
    InvalidRequestError,
    TokenizerError,
)
from loopcoder.engine.loader import random_model
from loopcoder.engine.sampling import FinishReason, SamplingParams
from loopcoder.engine.sampling.grammar import GrammarConstraint, GrammarVocab, json_schema_grammar
from loopcoder.engine.tokenizer import Tokenizer

from .helpers import tiny_config, tiny_engine

ISSUE_SCHEMA = {
    "type": "object",
    "properties": {
        "kind": {"enum": ["bug", "feature", "question"]},
        "priority": {"type": "integer", "minimum": 1, "maximum": 5},
        "title": {"type": "string", "maxLength": 20},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 8}, "maxItems": 3},
    },
    "required": ["kind", "priority", "title", "tags"],
    "additionalProperties": False,
}

FINDINGS_SCHEMA = {
    "type": "object",
    "properties": {
        "findings": {
            "type": "array",
            "maxItems": 5,
            "items": {
                "type": "object",
                "properties": {
                    "line": {"type": "integer"},
                    "severity": {"enum": ["error", "warning", "info"]},
                    "category": {"enum": ["security", "performance", "style", "correctness"]},
                    "message": {"type": "string", "maxLength": 200},
                    "replacement": {"type": ["string", "null"]},
                },
                "required": ["line", "severity", "category", "message", "replacement"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["findings"],
    "additionalProperties": False,
}

PADDING_ROWS = 64  # embedding rows past the tokenizer's vocab, as padded checkpoints have
# Enough for the longest issue: its 44 string characters as "\uXXXX" escapes of one byte a token, plus the rest.
ISSUE_TOKENS = 400


@pytest.fixture(scope="module")
def tokenizer(default_engine) -> Tokenizer:
    return default_engine.tokenizer


@pytest.fixture(autouse=True)
def one_thread():
    """Single-sequence decodes, mostly of a tiny model: on a busy 2-core machine a second torch
    thread spins against other processes (a 135M decode step went from 60 ms to 1 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def random_engine(tokenizer) -> Engine:
    """A tiny random model over the real default tokenizer: it samples almost any token, fast."""
    model = random_model(tiny_config(vocab_size=tokenizer.vocab_size + PADDING_ROWS), seed=0)
    model.init_random(0, 0.2)
    return Engine(model, tokenizer, EngineConfig(kv_budget_bytes=1 << 22, block_size=16))


@pytest.fixture(scope="module")
def reference(tokenizer) -> llguidance.LLTokenizer:
    """llguidance's tokenizer built here, not by the engine."""
    return llguidance.LLTokenizer(tokenizer.hf.to_str(), eos_token=list(tokenizer.eos_ids))


def replays(reference: llguidance.LLTokenizer, schema: dict, tokens: list[int]) -> bool:
    """A fresh matcher takes every token and ends complete."""
    matcher = llguidance.LLMatcher(reference, json_schema_grammar(schema), log_level=0)
    return matcher.consume_tokens(tokens) and matcher.is_accepting()


def chat_ids(tokenizer: Tokenizer, system: str, user: str) -> list[int]:
    prompt = tokenizer.apply_chat_template([{"role": "system", "content": system}, {"role": "user", "content": user}])
    return tokenizer.encode(prompt)


# --- every sample validates -------------------------------------------------------------


def test_sampled_outputs_all_validate(random_engine, tokenizer, reference):
    ids = tokenizer.encode("Classify: the app crashes when I click save.")
    texts = set()
    for seed in range(100):
        params = SamplingParams(max_new_tokens=ISSUE_TOKENS, temperature=1.0, seed=seed)
        value, result = random_engine.generate_json("issue", ids, ISSUE_SCHEMA, params)
        jsonschema.validate(value, ISSUE_SCHEMA)
        assert result.finish_reason == FinishReason.STOP
        assert all(t < tokenizer.vocab_size for t in result.token_ids), "a padding row was sampled"
        assert replays(reference, ISSUE_SCHEMA, result.token_ids), result.text
        texts.add(result.text)
    assert len(texts) > 90  # the seeds really sample


def test_seeded_sampling_repeats(random_engine, tokenizer):
    ids = tokenizer.encode("Classify: nothing works.")
    runs = [random_engine.generate(ids, ISSUE_TOKENS, 1.0, seed=seed, top_k=50, json_schema=ISSUE_SCHEMA)
            for seed in (7, 7, 8)]
    assert runs[0] == runs[1] != runs[2]


@pytest.mark.slow
def test_real_model_sampled_outputs_validate(default_engine, tokenizer, reference):
    ids = chat_ids(tokenizer, "Answer in JSON.", "Classify this issue: the app crashes when I click save.")
    for seed in range(3):
        params = SamplingParams(max_new_tokens=ISSUE_TOKENS, temperature=1.0, seed=seed)
        value, result = default_engine.generate_json("issue", ids, ISSUE_SCHEMA, params)
        jsonschema.validate(value, ISSUE_SCHEMA)
        assert replays(reference, ISSUE_SCHEMA, result.token_ids)
    default_engine.close("issue")


@pytest.mark.slow
def test_real_model_greedy_findings_validate(default_engine, tokenizer, reference):
    code = "def load(path):\n    f = open(path)\n    data = eval(f.read())\n    return data\n"
    ids = chat_ids(tokenizer, "You review code and answer in JSON.", f"Review this Python code:\n\n{code}")
    value, result = default_engine.generate_json("review", ids, FINDINGS_SCHEMA, SamplingParams(max_new_tokens=1024))
    default_engine.close("review")
    jsonschema.validate(value, FINDINGS_SCHEMA)
    assert result.finish_reason == FinishReason.STOP
    assert result.text.startswith('{"findings": [')
    assert replays(reference, FINDINGS_SCHEMA, result.token_ids)


def test_sentencepiece_tokenizer_is_supported(tmp_path):
    """A converted Llama-style SentencePiece tokenizer (byte fallback, "▁" spaces) drives the mask too.

    Its encoder must keep whitespace (identity normalization, as Llama's): llguidance
    re-tokenizes the bytes a grammar forces, and a tokenizer that drops a lone " " makes it
    allow tokens the grammar then rejects (the engine raises ConstrainedDecodingError).
    """
    rng = random.Random(0)
    words = ["bug", "feature", "crash", "save", "title", "kind", "tags", "priority", "app", "click"]
    corpus = "\n".join(" ".join(rng.choice(words) + rng.choice(['"', ":", ",", "", "1"]) for _ in range(8))
                       for _ in range(2000))
    (tmp_path / "corpus.txt").write_text(corpus, encoding="utf-8")
    spm.SentencePieceTrainer.train(input=str(tmp_path / "corpus.txt"), model_prefix=str(tmp_path / "tokenizer"),
                                   model_type="bpe", vocab_size=300, byte_fallback=True, minloglevel=2,
                                   hard_vocab_limit=False, control_symbols=["<|endoftext|>"],
                                   normalization_rule_name="identity", remove_extra_whitespaces=False)
    tokenizer = Tokenizer.from_pretrained_dir(tmp_path)
    engine = Engine(random_model(tiny_config(vocab_size=tokenizer.vocab_size + 8), seed=1), tokenizer,
                    EngineConfig(kv_budget_bytes=1 << 22))
    engine.model.init_random(1, 0.2)
    for seed in range(5):
        params = SamplingParams(max_new_tokens=ISSUE_TOKENS, temperature=1.0, seed=seed)
        value, _ = engine.generate_json("sp", tokenizer.encode("kind"), ISSUE_SCHEMA, params)
        jsonschema.validate(value, ISSUE_SCHEMA)


# --- the mask -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vocab(tokenizer) -> GrammarVocab:
    return GrammarVocab(tokenizer, tokenizer.vocab_size + PADDING_ROWS)


def constraint_after(vocab, tokenizer, schema: dict, prefix: str) -> GrammarConstraint:
    constraint = GrammarConstraint.for_json_schema(vocab, schema)
    for token in tokenizer.encode(prefix):
        constraint.consume(token)
    return constraint


def allowed_and_accepted(vocab, tokenizer, reference, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    """Over the tokenizer's ids after `prefix`: what our mask allows, and what a fresh matcher accepts."""
    allowed = ~constraint_after(vocab, tokenizer, ISSUE_SCHEMA, prefix).forbidden()[: tokenizer.vocab_size]
    matcher = llguidance.LLMatcher(reference, json_schema_grammar(ISSUE_SCHEMA), log_level=0)
    assert matcher.consume_tokens(tokenizer.encode(prefix))
    accepted = np.array([matcher.validate_tokens([t]) == 1 for t in range(tokenizer.vocab_size)])
    return allowed, accepted


@pytest.mark.parametrize("prefix", [
    '', '{"kind": "', '{"kind": "bug", "priority": ', '{"kind": "bug", "priority": 3, "title": "x", "tags": [',
])
def test_mask_allows_only_tokens_the_grammar_accepts(vocab, tokenizer, reference, prefix):
    allowed, accepted = allowed_and_accepted(vocab, tokenizer, reference, prefix)
    assert allowed.any()
    # Where the next bytes are forced, llguidance allows only their canonical tokens: a subset.
    assert not (allowed & ~accepted).any(), [tokenizer.decode([t]) for t in np.flatnonzero(allowed & ~accepted)]


def test_mask_inside_a_free_string_is_exactly_what_the_grammar_accepts(vocab, tokenizer, reference):
    # Tens of thousands of allowed ids, over every mask word: a wrong bit order shows here.
    allowed, accepted = allowed_and_accepted(vocab, tokenizer, reference, '{"kind": "bug", "priority": 3, "title": "a')
    assert accepted.sum() > 10_000
    np.testing.assert_array_equal(allowed, accepted)


def test_mask_forbids_padding_rows_and_keeps_allowed_logits(vocab, tokenizer):
    constraint = constraint_after(vocab, tokenizer, ISSUE_SCHEMA, '{"kind": "bug", "priority": 3, "title": "')
    forbidden = constraint.forbidden()
    assert forbidden.shape == (tokenizer.vocab_size + PADDING_ROWS,)
    assert forbidden[tokenizer.vocab_size:].all()
    logits = torch.randn(tokenizer.vocab_size + PADDING_ROWS)
    masked = constraint.mask(logits)
    keep = torch.from_numpy(~forbidden)
    assert torch.equal(masked[keep], logits[keep])
    assert torch.isneginf(masked[~keep]).all()
    assert torch.isfinite(logits).all()  # the caller's logits are left as they were


def test_grammar_end_allows_only_eos(vocab, tokenizer):
    complete = '{"kind": "bug", "priority": 3, "title": "", "tags": []}'
    constraint = constraint_after(vocab, tokenizer, ISSUE_SCHEMA, complete)
    assert constraint.done
    assert set(np.flatnonzero(~constraint.forbidden())) == set(tokenizer.eos_ids)
    assert all(constraint.is_end(t) for t in tokenizer.eos_ids)


def test_a_rejected_token_raises_and_the_matcher_stays_failed(vocab, tokenizer):
    constraint = GrammarConstraint.for_json_schema(vocab, ISSUE_SCHEMA)
    newline = tokenizer.encode("\n")[0]
    with pytest.raises(ConstrainedDecodingError, match=r"grammar rejected token \d+: .*doesn't satisfy the grammar"):
        constraint.consume(newline)
    with pytest.raises(ConstrainedDecodingError, match="the grammar matcher failed"):
        constraint.forbidden()


# --- stops, budget, cancel -------------------------------------------------------------------


def test_generate_json_raises_when_the_budget_runs_out(random_engine, tokenizer):
    ids = tokenizer.encode("Classify:")
    with pytest.raises(IncompleteOutputError, match=r"max_new_tokens=3 was reached after 3 generated tokens"):
        random_engine.generate_json("short", ids, ISSUE_SCHEMA, SamplingParams(max_new_tokens=3))


def test_generate_json_raises_cancelled(random_engine, tokenizer):
    ids = tokenizer.encode("Classify:")
    seen = []
    with pytest.raises(CancelledError, match=r"cancelled after 4 generated tokens"):
        random_engine.generate_json("cancel", ids, ISSUE_SCHEMA, SamplingParams(max_new_tokens=ISSUE_TOKENS),
                                    on_token=lambda token, text: seen.append(token), cancelled=lambda: len(seen) >= 4)


def test_stop_strings_still_apply(random_engine, tokenizer):
    ids = tokenizer.encode("Classify:")
    params = SamplingParams(max_new_tokens=ISSUE_TOKENS, stop=": ", json_schema=ISSUE_SCHEMA)
    result = random_engine.generate_for("stop", ids, params)
    assert (result.text, result.finish_reason) == ('{"kind"', FinishReason.STOP)
    with pytest.raises(IncompleteOutputError, match="a stop string or stop_when ended generation"):
        random_engine.generate_json("stop", ids, ISSUE_SCHEMA, SamplingParams(max_new_tokens=ISSUE_TOKENS, stop=": "))


def test_schema_end_stops_despite_ignore_eos(random_engine, tokenizer):
    schema = {"type": "integer", "minimum": 0, "maximum": 9}
    result = random_engine.generate_for("digit", tokenizer.encode("n ="),
                                        SamplingParams(max_new_tokens=50, ignore_eos=True, json_schema=schema))
    assert result.finish_reason == FinishReason.STOP
    assert 0 <= int(result.text) <= 9


# --- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize("schema, message", [
    ('{"type": "object"}', r"json_schema must be a JSON object \(a dict\), not str"),
    ([{"type": "object"}], r"json_schema must be a JSON object \(a dict\), not list"),
    ({"type": "nonsense"}, "json_schema is not supported: Invalid type: nonsense"),
    ({"type": "string", "pattern": "("}, "json_schema is not supported: regex parse error"),
    ({"$ref": "#/definitions/nope"}, "json_schema is not supported: .*'/definitions/nope' does not exist"),
    ({"enum": {1, 2}}, "json_schema is not JSON: Value is not JSON serializable"),
])
def test_bad_schemas_are_rejected_when_params_are_built(schema, message):
    with pytest.raises(InvalidRequestError, match=message):
        SamplingParams(json_schema=schema)


def test_params_with_a_schema_hash_and_compare():
    a, b = SamplingParams(json_schema=dict(ISSUE_SCHEMA)), SamplingParams(json_schema=dict(ISSUE_SCHEMA))
    assert a == b and hash(a) == hash(b)
    assert a != SamplingParams(json_schema={"type": "integer"})


def test_bad_requests_leave_the_engine_serving(random_engine, tokenizer):
    ids = tokenizer.encode("x =")
    before = random_engine.generate(ids, max_new_tokens=8)
    params = SamplingParams(max_new_tokens=8, json_schema=ISSUE_SCHEMA)
    with pytest.raises(InvalidRequestError, match=r"json_schema cannot be combined with token healing \(healed_text\)"):
        random_engine.generate_for("healed", ids, params, healed_text=" +")
    with pytest.raises(InvalidRequestError, match="not supported"):
        random_engine.generate_json("bad", ids, {"type": "nonsense"})
    assert "healed" not in random_engine.sessions and "bad" not in random_engine.sessions
    assert random_engine.generate(ids, max_new_tokens=8) == before
    value, _ = random_engine.generate_json("good", ids, ISSUE_SCHEMA, SamplingParams(max_new_tokens=ISSUE_TOKENS))
    jsonschema.validate(value, ISSUE_SCHEMA)


def test_an_engine_without_tokenizer_refuses_a_schema():
    engine = tiny_engine()
    before = engine.generate([1, 2, 3], max_new_tokens=4)
    with pytest.raises(TokenizerError, match=r"constrained decoding \(json_schema\) needs a tokenizer"):
        engine.generate([1, 2, 3], max_new_tokens=4, json_schema=ISSUE_SCHEMA)
    assert engine.generate([1, 2, 3], max_new_tokens=4) == before


@pytest.mark.slow
def test_healed_text_no_token_starts_with_is_refused_before_any_work(default_engine):
    """Found by schemathesis through the HTTP API's healed_text: the first token was restricted
    to an empty set, and sampling died on NaN probabilities (a 500)."""
    from loopcoder.engine.errors import InvalidRequestError
    from loopcoder.engine.sampling import SamplingParams

    ids = default_engine.tokenizer.encode("x = 1")
    for temperature in (0.0, 1.0):
        with pytest.raises(InvalidRequestError, match="no token of the vocabulary starts with"):
            default_engine.generate_for("heal", ids, SamplingParams(max_new_tokens=2, temperature=temperature),
                                        healed_text="0 means greedy")
    healed = default_engine.generate_for("heal", ids, SamplingParams(max_new_tokens=2), healed_text=" ")
    assert healed.token_ids  # a healable text still works
