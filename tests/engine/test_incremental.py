"""Warm sessions: after any edit, sync + decode equals a fresh full forward."""

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .helpers import tiny_engine

ATOL = 2e-5
ENGINES = {}


def engine_for(model_type):
    if model_type not in ENGINES:
        ENGINES[model_type] = tiny_engine(model_type, block_size=4, prefill_chunk=6)
    return ENGINES[model_type]


def apply_edit(doc: list[int], edit) -> list[int]:
    kind, pos, tokens, length = edit
    pos = min(pos, len(doc))
    if kind == "insert":
        return doc[:pos] + tokens + doc[pos:]
    if kind == "delete":
        out = doc[:pos] + doc[pos + length :]
        return out or tokens or [1]
    return doc[:pos] + tokens + doc[pos + len(tokens) :]  # replace


token_lists = st.lists(st.integers(0, 96), min_size=1, max_size=6)
edits = st.tuples(st.sampled_from(["insert", "delete", "replace"]), st.integers(0, 60), token_lists, st.integers(1, 12))


def check_session_matches_fresh(engine, key, doc):
    warm = engine.sync(key, doc)
    fresh = engine.logits(doc)[-1]
    torch.testing.assert_close(warm, fresh, atol=ATOL, rtol=0)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    model_type=st.sampled_from(["llama", "qwen2", "iquestloopcoder"]),
    start=st.lists(st.integers(0, 96), min_size=1, max_size=40),
    history=st.lists(edits, min_size=1, max_size=6),
)
def test_random_edit_sequences(model_type, start, history):
    engine = engine_for(model_type)
    key = "doc"
    engine.close(key)
    doc = start
    check_session_matches_fresh(engine, key, doc)
    for edit in history:
        doc = apply_edit(doc, edit)
        check_session_matches_fresh(engine, key, doc)
    engine.close(key)


def test_edit_inside_loop_window_and_at_zero():
    engine = tiny_engine("iquestloopcoder", block_size=4, prefill_chunk=5)
    doc = list(range(1, 40))
    check_session_matches_fresh(engine, "d", doc)
    for edited in (
        doc[:-3] + [90] + doc[-2:],  # inside the last W=5 positions
        [77] + doc[1:],  # position 0: nothing is reusable
        doc[:10],  # the document shrinks
        doc[:10] + [5, 6, 7],  # grows again from a cut inside a block
    ):
        check_session_matches_fresh(engine, "d", edited)
        doc = edited


def test_generation_then_accept_reuses_generated_tokens():
    """After a completion, a prompt that contains it (the user accepted it) prefills almost nothing."""
    engine = tiny_engine("iquestloopcoder")
    prompt = list(range(3, 30))
    out = engine.generate_for("d", prompt, params(8))
    assert (out.usage.prompt_tokens, out.usage.generated_tokens, out.usage.prefill_tokens) == (len(prompt), 8, len(prompt))
    usage = engine.prefill("d", prompt + out.token_ids)
    assert usage.cached_tokens == len(prompt) + len(out.token_ids) - 1
    assert usage.prefill_tokens == 1


def test_shared_prefix_across_documents_uses_hash_hits():
    engine = tiny_engine("llama", block_size=4)
    common = list(range(1, 33))
    engine.prefill("a", common + [5, 6])
    usage = engine.prefill("b", common + [7, 8, 9])
    assert usage.cached_tokens == 32
    assert engine.stats()["prefix_hits"] == 8
    check_session_matches_fresh(engine, "b", common + [7, 8, 9])


def params(n):
    from loopcoder.engine.sampling import SamplingParams

    return SamplingParams(max_new_tokens=n, ignore_eos=True)
