"""Continuous batching: shared steps give each request exactly what it would get alone."""

import threading
import time

import pytest
import torch

from loopcoder.engine.api import GenerationResult, Priority, Usage
from loopcoder.engine.errors import InvalidRequestError
from loopcoder.engine.sampling import FinishReason, SamplingParams
from loopcoder.engine.scheduler import Work

from .helpers import tiny_engine

GREEDY = SamplingParams(max_new_tokens=12, temperature=0.0, ignore_eos=True)


def prompts(n, length=23):
    return [[(7 * i + 3 * j) % 90 + 1 for j in range(length + 5 * i)] for i in range(n)]


def work(key, ids, params=GREEDY, **kwargs):
    return Work(key, ids, GenerationResult([], "", FinishReason.CANCELLED, Usage(prompt_tokens=len(ids))), params,
                **kwargs)


def submit_all(engine, works):
    with engine._lock:
        for w in works:
            engine.scheduler.submit(w)
    return works


@pytest.mark.parametrize("model_type", ["llama", "iquestloopcoder"])
def test_batched_generation_equals_one_at_a_time(model_type):
    engine = tiny_engine(model_type, prefill_chunk=9, step_tokens=20)
    alone = [engine.generate_for(f"alone{i}", p, GREEDY).token_ids for i, p in enumerate(prompts(5))]
    works = submit_all(engine, [work(f"batch{i}", p) for i, p in enumerate(prompts(5))])
    engine.scheduler.drive(works[0])  # the first caller's steps advance everyone
    for w in works:
        engine.scheduler.drive(w)
    assert [w.result.token_ids for w in works] == alone
    assert engine.scheduler.max_batch_seqs == 5  # all five decoded in the same steps


def test_real_threads_share_steps_and_get_their_own_answers():
    engine = tiny_engine("iquestloopcoder", prefill_chunk=16)
    alone = [engine.generate_for(f"alone{i}", p, GREEDY).token_ids for i, p in enumerate(prompts(6))]
    got = [None] * 6
    start = threading.Barrier(6)

    def ask(i, p):
        start.wait()
        got[i] = engine.generate_for(f"thread{i}", p, GREEDY, client=f"client{i % 2}").token_ids

    threads = [threading.Thread(target=ask, args=(i, p)) for i, p in enumerate(prompts(6))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert got == alone


def test_streamed_tokens_go_to_their_own_callback():
    engine = tiny_engine("llama")
    seen = {0: [], 1: []}
    works = submit_all(engine, [work(f"d{i}", p, on_token=lambda t, _, i=i: seen[i].append(t))
                                for i, p in enumerate(prompts(2))])
    for w in works:
        engine.scheduler.drive(w)
    for i, w in enumerate(works):
        assert [t for t in seen[i] if t >= 0] == w.result.token_ids


def test_interactive_prompt_goes_before_background_prefill():
    engine = tiny_engine("llama", prefill_chunk=8, step_tokens=8)
    long_doc = [(3 * j) % 90 + 1 for j in range(64)]
    background = work("warm", long_doc, None, priority=Priority.BACKGROUND)
    interactive = work("typing", prompts(1, 6)[0], SamplingParams(max_new_tokens=2, ignore_eos=True))
    submit_all(engine, [background, interactive])
    with engine._lock:
        engine.scheduler.step()
    # The one 8-token step went to the completion's prompt, which then decodes first.
    assert interactive.result.usage.prefill_tokens == 6 and background.result.usage.prefill_tokens == 2
    engine.scheduler.drive(interactive)
    assert not background.finished
    engine.scheduler.drive(background)
    assert background.result.usage.prefill_tokens == 64


def test_fairness_serves_the_least_served_client_first():
    engine = tiny_engine("llama", prefill_chunk=8, step_tokens=8)
    engine.scheduler._served["greedy-client"] = 1000.0
    first = work("a", prompts(1, 30)[0], priority=Priority.ACTION, client="greedy-client")
    second = work("b", prompts(1, 30)[0][::-1], priority=Priority.ACTION, client="quiet-client")
    submit_all(engine, [first, second])
    with engine._lock:
        engine.scheduler.step()
    assert second.result.usage.prefill_tokens == 8 and first.result.usage.prefill_tokens == 0


def test_cancel_leaves_the_batch_at_the_next_step_and_keeps_the_kv():
    engine = tiny_engine("llama", prefill_chunk=8)
    flag = threading.Event()
    doomed = work("doomed", prompts(1, 40)[0], cancelled=flag.is_set)
    other = work("other", prompts(2)[1])
    submit_all(engine, [doomed, other])
    with engine._lock:
        engine.scheduler.step()
    flag.set()
    with engine._lock:
        engine.scheduler.step()
    assert doomed.finished and doomed.result.finish_reason is FinishReason.CANCELLED
    assert engine.sessions["doomed"].num_tokens == 8  # what was computed stays with the document
    engine.scheduler.drive(other)
    assert other.result.finish_reason is FinishReason.LENGTH
    usage = engine.prefill("doomed", prompts(1, 40)[0])
    assert usage.cached_tokens == 8


def test_a_second_request_for_a_document_waits_for_the_first():
    engine = tiny_engine("llama")
    doc = prompts(1)[0]
    first, second = submit_all(engine, [work("d", doc), work("d", doc + [5])])
    with engine._lock:
        engine.scheduler.step()
    assert first in engine.scheduler.running and second in engine.scheduler.waiting
    engine.scheduler.drive(second)
    assert first.finished and second.finished
    # The second reused the first's prompt K/V.
    assert second.result.usage.cached_tokens >= len(doc) - 1


def test_a_failing_callback_fails_only_its_request():
    engine = tiny_engine("llama")

    def explode(token, text):
        raise RuntimeError("the client's callback broke")

    bad, good = submit_all(engine, [work("bad", prompts(1)[0], on_token=explode), work("good", prompts(2)[1])])
    with pytest.raises(RuntimeError, match="callback broke"):
        engine.scheduler.drive(bad)
    engine.scheduler.drive(good)
    assert len(good.result.token_ids) == GREEDY.max_new_tokens


def test_closing_a_document_cancels_its_queued_request():
    engine = tiny_engine("llama")
    doc = prompts(1)[0]
    running, queued = submit_all(engine, [work("d", doc), work("d", doc + [1])])
    with engine._lock:
        engine.scheduler.step()
    engine.close("d")
    assert running.result.finish_reason is FinishReason.CANCELLED
    assert queued.result.finish_reason is FinishReason.CANCELLED and not engine.scheduler.waiting


def test_bad_prompt_is_refused_before_it_is_queued():
    engine = tiny_engine("llama")
    with pytest.raises(InvalidRequestError, match="out of range"):
        engine.generate_for("d", [1, 2, 1000], GREEDY)
    assert not engine.scheduler.waiting and not engine.scheduler.running


def test_sync_logits_through_the_scheduler_match_a_full_forward():
    engine = tiny_engine("iquestloopcoder", prefill_chunk=5, step_tokens=11)
    doc = prompts(1, 37)[0]
    torch.testing.assert_close(engine.sync("d", doc), engine.logits(doc)[-1], atol=2e-5, rtol=0)


def test_a_request_is_queued_while_a_step_holds_the_engine():
    """Submitting must not wait for the engine lock: the driving thread re-takes it step after
    step, and requests queued behind it joined batches late (3.5 tokens a step at 32 clients)."""
    engine = tiny_engine("llama")
    done = threading.Event()
    with engine._lock:  # a step in progress
        thread = threading.Thread(target=lambda: (engine.generate_for("d", prompts(1)[0], GREEDY), done.set()))
        thread.start()
        deadline = time.monotonic() + 10
        while engine.scheduler.queue_depth == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert engine.scheduler.queue_depth == 1  # queued, waiting for the next step
    thread.join(30)
    assert done.is_set()
