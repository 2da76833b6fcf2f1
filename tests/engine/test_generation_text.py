"""Text streaming around stops: nothing held back is lost, nothing past a stop leaks."""

import torch

from loopcoder.engine.sampling import FinishReason, SamplingParams


def script(monkeypatch, engine, tokens):
    """Make the model 'choose' `tokens` in order, whatever the prompt."""
    queue = list(tokens)
    real_step = engine.runner.step

    def step(batch, kv, all_logits=False):
        out = real_step(batch, kv, all_logits)
        scripted = torch.full_like(out, -1e9)
        if queue:
            scripted[:, queue.pop(0)] = 0.0
        return scripted

    monkeypatch.setattr(engine.runner, "step", step)


def run(engine, prompt, params, **kw):
    seen = []
    result = engine.generate_for("t", engine.tokenizer.encode(prompt), params, on_token=lambda i, t: seen.append(t), **kw)
    engine.close("t")
    return result, "".join(seen)


def test_text_held_for_a_stop_string_is_emitted_at_eos(default_engine, monkeypatch):
    tok = default_engine.tokenizer
    ids = tok.encode("x = 1\n") + [tok.eos_ids[0]]
    script(monkeypatch, default_engine, ids)
    result, streamed = run(default_engine, "# a", SamplingParams(max_new_tokens=20, stop=("\n\n",)))
    assert result.finish_reason == FinishReason.STOP
    assert result.text == streamed == "x = 1\n"


def test_stop_string_split_across_tokens_is_not_emitted(default_engine, monkeypatch):
    tok = default_engine.tokenizer
    script(monkeypatch, default_engine, tok.encode("a = 2\n") + tok.encode("\nb = 3"))
    result, streamed = run(default_engine, "# a", SamplingParams(max_new_tokens=20, stop=("\n\n",)))
    assert result.text == streamed == "a = 2"
    assert result.finish_reason == FinishReason.STOP


def test_multibyte_character_over_several_tokens_is_emitted_whole(default_engine, monkeypatch):
    tok = default_engine.tokenizer
    ids = tok.encode("π")
    assert len(ids) >= 1
    script(monkeypatch, default_engine, ids * 3)
    result, streamed = run(default_engine, "# a", SamplingParams(max_new_tokens=len(ids)))
    assert result.finish_reason == FinishReason.LENGTH and result.text == streamed == "π"


def test_healed_text_is_cut_and_constrains_the_first_token(default_engine):
    tok = default_engine.tokenizer
    result, streamed = run(default_engine, "def add(a, b):\n    return a", SamplingParams(max_new_tokens=3), healed_text=" +")
    full = tok.decode(result.token_ids)
    assert full.startswith(" +")  # the first token was forced to extend the dropped text
    assert result.text == streamed == full[len(" +"):]


def test_cancel_stops_between_steps(default_engine):
    calls = []

    def cancelled():
        calls.append(1)
        return len(calls) > 3

    result, _ = run(default_engine, "def f():", SamplingParams(max_new_tokens=50, ignore_eos=True), cancelled=cancelled)
    assert result.finish_reason == FinishReason.CANCELLED and len(result.token_ids) < 50
