"""Completion prompt, stop rules and post-processing; end to end on the real default model."""

import pytest

from loopcoder.engine.errors import InvalidRequestError
from loopcoder.lsp.features.completion import CompletionOptions, complete, offset_of, postprocess


def test_offset_of_is_one_based_and_checked():
    text = "ab\ncde\n"
    assert offset_of(text, 1, 1) == 0 and offset_of(text, 2, 3) == 5 and offset_of(text, 3, 1) == 7
    with pytest.raises(InvalidRequestError, match="line 4 is outside"):
        offset_of(text, 4, 1)
    with pytest.raises(InvalidRequestError, match="column 5 is outside line 2"):
        offset_of(text, 2, 5)


def test_postprocess_trims_and_cuts_at_dedent():
    prefix = "def f(x):\n    y = 1\n    "
    out = postprocess("return x + y   \n\ndef g():\n    pass", prefix, "")
    assert out == "return x + y"


def test_postprocess_drops_repeat_of_suffix():
    assert postprocess("x = compute(a, b))", "    ", "b))\nprint(x)\n") == "x = compute(a,"
    assert postprocess("   \n  ", "", "") == ""


def test_postprocess_blank_cursor_line_continues_below():
    prefix = "def f():\n    \"\"\"Doc.\"\"\"\n    "
    assert postprocess("\n    return 1\n    ", prefix, "") == "return 1"


def test_postprocess_stops_where_the_text_after_the_cursor_resumes():
    prefix = "def f(xs):\n    "
    suffix = "\n    return total\n"
    generated = "total = 0\n    for x in xs:\n        total += x\n    return total\n\nprint(f([1]))"
    assert postprocess(generated, prefix, suffix) == "total = 0\n    for x in xs:\n        total += x"
    # The model wrote the suffix's line and went on: all of that is cut, not only a repeated ending.
    generated = "total = sum(xs)\n    return total\n    total = 0\n    return total * 2"
    assert postprocess(generated, prefix, suffix) == "total = sum(xs)"


def test_postprocess_drops_the_unfinished_tail_of_a_length_cut():
    prefix = "def f(xs):\n    "
    generated = "for x in xs:\n        if x > 0:\n            print(x)\n        if x < 0:\n            pri"
    assert postprocess(generated, prefix, "", truncated=True) == "for x in xs:\n        if x > 0:\n            print(x)"
    assert postprocess("for x in xs:\n        if x:", prefix, "", truncated=True) == ""  # only openers left
    assert postprocess("return x + y", prefix, "", truncated=True) == "return x + y"  # one line: the user sees it as typed


def test_bad_offset(default_engine):
    with pytest.raises(InvalidRequestError, match="offset 99 is outside"):
        complete(default_engine, "k", "abc", 99)


@pytest.mark.slow
def test_real_completion_of_a_function_body(default_engine):
    text = 'def add(a: int, b: int) -> int:\n    """Return the sum of a and b."""\n    return '
    result = complete(default_engine, "file:///add.py", text, len(text), CompletionOptions(max_new_tokens=12))
    assert result.text.strip().startswith("a + b"), result.text
    # Typing one more character reuses the warm prefix.
    again = complete(default_engine, "file:///add.py", text + "a", len(text) + 1, CompletionOptions(max_new_tokens=4))
    assert again.result.usage.cached_tokens >= again.prompt_tokens - 3


@pytest.mark.slow
@pytest.mark.parametrize("multiline", [False, True])
@pytest.mark.parametrize("text", [
    'def add(a: int, b: int) -> int:\n    """Return the sum of a and b."""\n    ',
    "def total(xs):\n    t = 0\n    for x in xs:\n        ",
])
def test_cursor_after_indentation_gets_the_statement_not_whitespace(default_engine, text, multiline):
    """The cursor sits after the auto-indent of a fresh line. The prompt must not end in that
    whitespace: tokenizers merge a newline with the spaces after it, so a prompt ending in
    bare spaces is one the model never saw (it answered "" or an extra space)."""
    result = complete(default_engine, f"file:///indent{multiline}.py", text, len(text),
                      CompletionOptions(max_new_tokens=16, multiline=multiline))
    assert result.text.strip(), result.result.text
    assert not result.text[0].isspace(), repr(result.text)


def test_postprocess_of_a_line_start_prompt_keeps_the_cursor_indentation():
    from loopcoder.lsp.features.completion import from_line_start

    assert from_line_start("        return x\n    y", "        ") == "return x\n    y"
    assert from_line_start("\n\n    return x", "    ") == "return x"
    assert from_line_start("  return x", "    ") == "return x"  # less indented than the cursor: at the cursor
    assert from_line_start("\treturn x", "\t") == "return x"


def test_bounded_prefix_is_stable_while_typing():
    from loopcoder.lsp.features.completion import PREFIX_CUT_QUANTUM, bounded_prefix

    text = "".join(f"line {i} = {i * 7}\n" for i in range(20000))
    cut = bounded_prefix(text, 10000)
    assert len(cut) <= 10000 and text.endswith(cut) and (text[: -len(cut)].endswith("\n"))
    starts = {len(text) + k - len(bounded_prefix(text + "x" * k, 10000)) for k in range(200)}
    assert len(starts) == 1  # typing 200 characters never moved the prompt's start
    assert bounded_prefix("short\n", 10000) == "short\n"
    assert PREFIX_CUT_QUANTUM < 10000


@pytest.mark.slow
def test_huge_document_prompt_fits_the_model_and_stays_warm(default_engine):
    text = "".join(f"value_{i} = compute({i})\n" for i in range(40000))  # ~1 MB, far past 8K tokens
    options = CompletionOptions(max_new_tokens=4, prefix_tokens=1024)  # dense text: ~2 characters a token
    first = complete(default_engine, "file:///huge.py", text, len(text), options)
    assert first.prompt_tokens <= 1024
    again = complete(default_engine, "file:///huge.py", text + "v", len(text) + 1, options)
    assert again.result.usage.cached_tokens >= again.prompt_tokens - 4
    default_engine.close("file:///huge.py")


# -- the typed-through cache -----------------------------------------------------------------

from loopcoder.lsp.features.inline_completion import TypedThrough  # noqa: E402

BEFORE = "def add(a, b):\n    return "
AFTER = "\n\nprint(add(1, 2))\n"


def _typed(cache: TypedThrough, typed: str, multiline=False, before=BEFORE, after=AFTER):
    text = before + typed + after
    return cache.rest("doc", text, len(before) + len(typed), multiline)


def test_typed_through_serves_the_rest_of_the_suggestion():
    cache = TypedThrough()
    cache.remember("doc", BEFORE + AFTER, len(BEFORE), "a + b", multiline=False)
    assert _typed(cache, "a") == " + b"
    assert _typed(cache, "a +") == " b"
    assert _typed(cache, "a + b") is None  # all typed: nothing left to show
    assert _typed(cache, "x") is None  # typed something else
    assert _typed(cache, "") is None  # nothing typed: ask the model (the cursor may have moved)


def test_typed_through_needs_the_rest_of_the_document_unchanged():
    cache = TypedThrough()
    cache.remember("doc", BEFORE + AFTER, len(BEFORE), "a + b", multiline=False)
    assert _typed(cache, "a", after=AFTER.replace("1, 2", "1, 3")) is None
    assert _typed(cache, "a", before=BEFORE.replace("add", "sum")) is None
    cache.forget("doc")
    assert _typed(cache, "a") is None


def test_typed_through_single_line_for_automatic_triggers():
    cache = TypedThrough()
    cache.remember("doc", BEFORE + AFTER, len(BEFORE), "a + b\n    # done", multiline=True)
    assert _typed(cache, "a", multiline=False) == " + b"
    assert _typed(cache, "a", multiline=True) == " + b\n    # done"
    cache.remember("doc", BEFORE + AFTER, len(BEFORE), "a + b", multiline=False)
    assert _typed(cache, "a", multiline=True) is None  # a block was asked for, the line is not enough
    cache.remember("doc", BEFORE + AFTER, len(BEFORE), None, multiline=False)
    assert _typed(cache, "a") is None


def test_prewarm_pays_for_a_completion_in_the_head_of_a_long_file(default_engine):
    from loopcoder.lsp.features.completion import CompletionOptions, complete
    from loopcoder.lsp.features.prewarm import prewarm

    text = "".join(f"def f{i}(x):\n    return x * {i}\n\n" for i in range(2000))  # ~60K chars
    options = CompletionOptions(max_new_tokens=2, prefix_tokens=512, multiline=False)
    usage = prewarm(default_engine, "prewarm-head", text, options, lambda: False)
    assert usage is not None and usage.prompt_tokens == 512  # this text is denser than 4 characters a token
    offset = text.index("def f20(")  # inside the pre-warmed head
    done = complete(default_engine, "prewarm-head", text, offset, options)
    assert done.result.usage.cached_tokens >= done.prompt_tokens - 16


def test_load_failure_on_a_missing_device_is_a_model_load_error(tmp_path):
    from loopcoder.engine.errors import EngineUnavailableError, ModelLoadError
    from loopcoder.lsp.features.engine_loading import load_engine
    from loopcoder.lsp.features.settings import ServerSettings

    with pytest.raises(ModelLoadError, match="could not load the model on device 'nonsense:7'"):
        load_engine(ServerSettings(device="nonsense:7", backend="inprocess"))
    # Through the daemon the front end starts, the daemon's own words come back.
    with pytest.raises(EngineUnavailableError, match="exited with status 2 while starting: .*could not load the model "
                                                     "on device 'nonsense:7'"):
        load_engine(ServerSettings(device="nonsense:7", socket=str(tmp_path / "engine.sock")))
