import math
from collections import Counter

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from loopcoder.engine.errors import InvalidRequestError
from loopcoder.engine.sampling import DedentStop, FinishReason, SamplingParams, StopChecker, watch_stop
from loopcoder.engine.sampling.sampler import Sampler, sample_batch

KNOWN_PROBS = [0.5, 0.3, 0.15, 0.05]


def draw(params: SamplingParams, logits: torch.Tensor, n: int) -> list[int]:
    sampler = Sampler(params)
    return [sampler.sample(logits) for _ in range(n)]


def log_probs(probs: list[float]) -> torch.Tensor:
    return torch.tensor([math.log(p) for p in probs])


finite_logits = st.lists(
    st.floats(-30, 30, allow_nan=False, allow_infinity=False, allow_subnormal=False, width=32), min_size=1, max_size=40
)


# --- SamplingParams -------------------------------------------------------------------


def test_defaults_are_greedy():
    params = SamplingParams()
    assert params.is_greedy
    assert params.max_new_tokens == 16 and params.stop == () and params.seed is None


def test_lists_become_tuples_and_lone_string_is_one_stop():
    params = SamplingParams(stop=["\n\n", "```"], stop_token_ids=[3, 7])
    assert params.stop == ("\n\n", "```") and params.stop_token_ids == (3, 7)
    assert SamplingParams(stop="END").stop == ("END",)


def test_is_greedy():
    assert not SamplingParams(temperature=0.7).is_greedy
    assert SamplingParams(temperature=0.7, top_k=1).is_greedy


@pytest.mark.parametrize(
    "field, value",
    [
        ("max_new_tokens", 0),
        ("max_new_tokens", -3),
        ("max_new_tokens", (1 << 20) + 1),
        ("max_new_tokens", 2.0),
        ("max_new_tokens", True),
        ("temperature", -0.1),
        ("temperature", math.inf),
        ("temperature", math.nan),
        ("temperature", "hot"),
        ("top_k", -1),
        ("top_k", 2.5),
        ("top_p", 0.0),
        ("top_p", -0.5),
        ("top_p", 1.01),
        ("top_p", math.nan),
        ("seed", -1),
        ("seed", 1 << 64),
        ("seed", 1.5),
        ("stop", ("",)),
        ("stop", ("ok", "")),
        ("stop", tuple(f"s{i}" for i in range(17))),
        ("stop", ("x" * 1025,)),
        ("stop", (3,)),
        ("stop", 3),
        ("stop_token_ids", (-1,)),
        ("stop_token_ids", ("eos",)),
        ("stop_token_ids", 5),
        ("ignore_eos", "yes"),
    ],
)
def test_bad_params_are_rejected_naming_the_field(field, value):
    with pytest.raises(InvalidRequestError, match=field):
        SamplingParams(**{field: value})


def test_limits_themselves_are_accepted():
    SamplingParams(max_new_tokens=1 << 20, top_p=1.0, seed=(1 << 64) - 1)
    SamplingParams(stop=tuple(f"s{i}" for i in range(16)), top_p=1e-9, temperature=1e-30)


# --- Sampler --------------------------------------------------------------------------


def test_greedy_is_argmax():
    logits = torch.tensor([0.1, 2.5, -1.0, 2.4])
    assert draw(SamplingParams(), logits, 5) == [1] * 5


def test_greedy_ties_go_to_the_lowest_id():
    logits = torch.tensor([0.0, 3.0, 1.0, 3.0, 3.0])
    assert Sampler(SamplingParams()).sample(logits) == 1


def test_same_seed_gives_same_sequence():
    params = SamplingParams(temperature=1.0, seed=1234)
    steps = [torch.randn(1000, generator=torch.Generator().manual_seed(i)) for i in range(50)]
    first, second = Sampler(params), Sampler(params)
    assert [first.sample(x) for x in steps] == [second.sample(x) for x in steps]
    other = Sampler(SamplingParams(temperature=1.0, seed=4321))
    assert [other.sample(x) for x in steps] != [first.sample(x) for x in steps]


def test_unseeded_samplers_draw_their_own_seed():
    params = SamplingParams(temperature=1.0)
    assert Sampler(params).seed != Sampler(params).seed


def test_frequencies_follow_tempered_softmax():
    logits = torch.tensor([1.0, 2.0, 0.5, -1.0])
    temperature, n = 0.7, 2000
    counts = Counter(draw(SamplingParams(temperature=temperature, seed=7), logits, n))
    expected = torch.softmax(logits / temperature, dim=-1).tolist()
    for token_id, p in enumerate(expected):
        assert abs(counts[token_id] / n - p) < 0.04, (token_id, counts, expected)


@settings(max_examples=60, deadline=None)
@given(finite_logits, st.data(), st.floats(0.05, 5.0), st.integers(0, 2**32))
def test_top_k_never_samples_outside_top_k(values, data, temperature, seed):
    k = data.draw(st.integers(1, len(values)))
    logits = torch.tensor(values)
    kth_largest = torch.topk(logits, k).values[-1]
    params = SamplingParams(temperature=temperature, top_k=k, seed=seed)
    for token_id in draw(params, logits, 20):
        assert logits[token_id] >= kth_largest


@pytest.mark.parametrize("top_p, allowed", [(0.8, {0, 1}), (0.81, {0, 1, 2}), (0.5, {0})])
def test_top_p_keeps_the_minimal_nucleus(top_p, allowed):
    params = SamplingParams(temperature=1.0, top_p=top_p, seed=3)
    assert set(draw(params, log_probs(KNOWN_PROBS), 500)) == allowed


@pytest.mark.parametrize(
    "probs, top_p, allowed", [([0.6, 0.25, 0.15], 0.85, {0, 1}), ([0.45, 0.35, 0.2], 0.45, {0})]
)
def test_top_p_tolerates_float32_rounding(probs, top_p, allowed):
    # float32 softmax puts these masses a hair below top_p; they still fill the nucleus.
    params = SamplingParams(temperature=1.0, top_p=top_p, seed=3)
    assert set(draw(params, log_probs(probs), 500)) == allowed


def test_top_p_applies_after_top_k():
    # Within the top 2, renormalised probabilities are 0.625 and 0.375.
    params = SamplingParams(temperature=1.0, top_k=2, top_p=0.6, seed=3)
    assert set(draw(params, log_probs(KNOWN_PROBS), 200)) == {0}


@settings(max_examples=40, deadline=None)
@given(finite_logits, st.integers(0, 2**32))
def test_tiny_top_p_is_argmax(values, seed):
    logits = torch.tensor(values)
    params = SamplingParams(temperature=1.5, top_p=1e-9, seed=seed)
    for token_id in draw(params, logits, 5):
        assert logits[token_id] == logits.max()


def test_tiny_temperature_does_not_overflow():
    logits = torch.tensor([100.0, 99.0, -50.0])
    assert draw(SamplingParams(temperature=1e-30, seed=0), logits, 10) == [0] * 10


def test_masked_logits_are_never_sampled():
    logits = torch.tensor([0.0, -math.inf, 0.0, -math.inf])
    assert set(draw(SamplingParams(temperature=1.0, seed=5), logits, 200)) == {0, 2}


def test_bf16_logits_are_upcast():
    logits = torch.randn(500, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    params = SamplingParams(temperature=0.9, top_k=50, top_p=0.9, seed=11)
    assert draw(params, logits, 30) == draw(params, logits.float(), 30)
    assert Sampler(SamplingParams()).sample(logits) == int(logits.float().argmax())


def test_sample_batch_matches_per_row_sampling():
    logits = torch.randn(5, 300, generator=torch.Generator().manual_seed(1))
    row_params = [
        SamplingParams(),
        SamplingParams(temperature=0.8, seed=1),
        SamplingParams(temperature=1.2, top_k=20, seed=2),
        SamplingParams(temperature=0.0, seed=3),
        SamplingParams(temperature=1.0, top_p=0.7, seed=4),
    ]
    batched, single = [Sampler(p) for p in row_params], [Sampler(p) for p in row_params]
    for _ in range(10):
        expected = [s.sample(row) for s, row in zip(single, logits)]
        assert sample_batch(logits, batched) == expected
    assert sample_batch(logits.to(torch.bfloat16), [Sampler(SamplingParams())] * 5) == [
        int(i) for i in logits.to(torch.bfloat16).float().argmax(dim=-1)
    ]


def test_sample_batch_rejects_mismatched_rows():
    with pytest.raises(ValueError):
        sample_batch(torch.zeros(2, 10), [Sampler(SamplingParams())])


# --- StopChecker ----------------------------------------------------------------------


def checker(*stops: str, **kwargs) -> StopChecker:
    return StopChecker(SamplingParams(stop=stops, **kwargs), eos_token_ids=[2])


def feed_all(stop_checker: StopChecker, deltas: list[str]) -> tuple[str, bool]:
    emitted = []
    for delta in deltas:
        text, hit = stop_checker.feed(delta)
        emitted.append(text)
        if hit:
            return "".join(emitted), True
    return "".join(emitted) + stop_checker.flush(), False


def test_check_token_eos_and_stop_ids():
    assert checker().check_token(2)
    assert not checker().check_token(5)
    assert not checker(ignore_eos=True).check_token(2)
    with_ids = checker(stop_token_ids=(5,), ignore_eos=True)
    assert with_ids.check_token(5) and not with_ids.check_token(2)


def test_stop_string_split_across_deltas_is_caught_and_hidden():
    stop_checker = checker("\n\n")
    assert stop_checker.feed("def f():") == ("def f():", False)
    assert stop_checker.feed("\n") == ("", False)
    assert stop_checker.feed("\n") == ("", True)


def test_stop_string_split_across_many_deltas():
    assert feed_all(checker("<|end|>"), ["x = 1", "<", "|", "en", "d", "|>", "tail"]) == ("x = 1", True)


def test_held_prefix_that_is_not_a_stop_is_emitted_later():
    stop_checker = checker("\n\n")
    assert stop_checker.feed("a\n") == ("a", False)
    assert stop_checker.feed("b") == ("\nb", False)
    assert stop_checker.feed("c\n") == ("c", False)
    assert stop_checker.flush() == "\n"
    assert stop_checker.flush() == ""


def test_earliest_stop_string_wins():
    assert feed_all(checker("STOP", "\n"), ["a\nbSTOP"]) == ("a", True)
    assert feed_all(checker("\n", "STOP"), ["aSTOP\nb"]) == ("a", True)


def test_overlapping_stops_end_at_the_first_to_complete():
    assert feed_all(checker("abcd", "c"), ["abcd"]) == ("ab", True)
    assert feed_all(checker("bc", "c"), ["a", "bc"]) == ("a", True)


def test_stop_at_the_very_start():
    assert checker("```").feed("```python") == ("", True)


def test_feed_after_stop_emits_nothing():
    stop_checker = checker("x")
    assert stop_checker.feed("ax") == ("a", True)
    assert stop_checker.feed("more") == ("", True)
    assert stop_checker.flush() == ""


def test_unicode_stop_strings():
    assert feed_all(checker("🛑é"), ["héllo ", "🛑", "é", "after"]) == ("héllo ", True)
    assert feed_all(checker("🛑é"), ["🛑", "e"]) == ("🛑e", False)


def test_no_stop_strings_emits_everything_at_once():
    assert checker().feed("anything\n\n") == ("anything\n\n", False)


def first_stop_truncation(text: str, stops: list[str]) -> tuple[str, bool]:
    """Reference: cut before the stop string that completes first (the longer on a tie)."""
    matches = [(text.find(s) + len(s), text.find(s)) for s in stops if s in text]
    return (text[: min(matches)[1]], True) if matches else (text, False)


alphabet = st.sampled_from(["a", "b", "\n", "é", "🙂"])
short_text = st.lists(alphabet, max_size=4).map("".join)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(alphabet, max_size=40).map("".join),
    st.lists(short_text.filter(bool), min_size=1, max_size=4),
    st.lists(st.integers(0, 40), max_size=12),
)
def test_streamed_output_equals_text_truncated_at_first_stop(text, stops, cuts):
    bounds = sorted({0, len(text), *(c for c in cuts if c < len(text))})
    deltas = [text[a:b] for a, b in zip(bounds, bounds[1:])]
    assert feed_all(checker(*stops), deltas) == first_stop_truncation(text, stops)


def test_finish_reason_values():
    assert [r.value for r in FinishReason] == ["stop", "length", "cancelled"]
    assert FinishReason.LENGTH == "length"


def test_top_k_selects_on_raw_logits_not_rounded_shifted_ones():
    # 1.2e-7 - 3.0 rounds to -3.0 in float32, tying with 0.0 - 3.0 after the max shift.
    logits = torch.tensor([0.0, 3.0, 1.1920928955078125e-07])
    params = SamplingParams(temperature=1.0, top_k=2, seed=0)
    assert set(draw(params, logits, 200)) <= {1, 2}


def test_a_temperature_that_underflows_float32_is_greedy():
    """Found by schemathesis: temperature=1e-300 is 0 in float32, and (logits - max) / 0 made
    NaN probabilities (a RuntimeError in multinomial)."""
    logits = torch.tensor([0.5, 3.0, -1.0, 2.9])
    for temperature in (1e-300, 1e-46, 1e-9):
        assert Sampler(SamplingParams(temperature=temperature, seed=1)).sample(logits) == 1


# --- stop predicates over streamed text ---------------------------------------------------


def _whole_text_stops(predicate, deltas: list[str]) -> int | None:
    """The index of the delta after which `predicate(text so far)` first holds: the old, quadratic way."""
    text = ""
    for i, delta in enumerate(deltas):
        text += delta
        if predicate(text):
            return i
    return None


def _watched_stops(predicate, deltas: list[str]) -> int | None:
    watch = watch_stop(predicate)
    return next((i for i, delta in enumerate(deltas) if watch.feed(delta)), None)


@settings(max_examples=300, deadline=None)
@given(indent=st.integers(0, 6), line_start=st.sampled_from(["", "    ", "\t", "  x = "]),
       deltas=st.lists(st.text(alphabet=" \tab\n", max_size=6), max_size=12))
def test_a_dedent_stop_reads_each_delta_once_and_agrees_with_the_whole_text(indent, line_start, deltas):
    stop = DedentStop(indent, line_start)
    assert _watched_stops(stop, deltas) == _whole_text_stops(stop, deltas)


def test_a_dedent_stop_fires_on_the_first_whole_line_left_of_the_block():
    watch = DedentStop(4, "    ").watch()
    assert [watch.feed(d) for d in ["return 1\n", "    ", "x", "\n", "pri", "nt()\n"]] == [False] * 5 + [True]
    assert not DedentStop(4, "    ")("return 1\n    x\n")
    assert DedentStop(4, "    ")("return 1\nprint()\n")  # the first line is the cursor's: never the stop


def test_any_other_stop_predicate_sees_the_whole_text_so_far():
    seen = []
    watch = watch_stop(lambda text: seen.append(text) or text.endswith("ab"))
    assert [watch.feed(d) for d in ["a", "", "b"]] == [False, False, True]
    assert seen == ["a", "a", "ab"]
