"""Document store: incremental sync, position encodings, CRLF, past-the-end positions."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loopcoder.engine.errors import InvalidRequestError
from loopcoder.lsp.features.documents import (
    Change,
    DocumentStore,
    Position,
    Range,
    line_starts,
    offset_at,
    position_at,
)

URI = "file:///t.py"
# Text with every kind of line ending, a BMP non-ASCII letter and an astral emoji.
ALPHABET = st.sampled_from(["a", "b", " ", "\n", "\r\n", "\r", "é", "😀", "中"])
texts = st.lists(ALPHABET, max_size=30).map("".join)
encodings = st.sampled_from(["utf-8", "utf-16", "utf-32"])


def _boundaries(text: str) -> list[int]:
    """Offsets an LSP position can name: not between the \\r and \\n of a CRLF."""
    return [i for i in range(len(text) + 1) if not (0 < i < len(text) and text[i - 1] == "\r" and text[i] == "\n")]


@st.composite
def edit_sequences(draw):
    """A start text, edits (offset ranges and new text) and the text they should give."""
    text = draw(texts)
    edits = []
    for _ in range(draw(st.integers(0, 6))):
        points = _boundaries(text)
        a, b = sorted((draw(st.sampled_from(points)), draw(st.sampled_from(points))))
        new = draw(texts)
        edits.append((a, b, new, text))
        text = text[:a] + new + text[b:]
    return edits, text


@settings(max_examples=300, deadline=None)
@given(edit_sequences(), encodings)
def test_random_incremental_edits_equal_the_final_text(case, encoding):
    edits, final = case
    start = edits[0][3] if edits else final
    store = DocumentStore(encoding)
    store.open(URI, start, version=1)
    for version, (a, b, new, before) in enumerate(edits, start=2):
        rng = Range(position_at(before, a, encoding), position_at(before, b, encoding))
        store.change(URI, version, [Change(new, rng)])
    assert store.get(URI).text == final
    assert store.get(URI).version == len(edits) + 1


@settings(max_examples=300, deadline=None)
@given(texts, encodings)
def test_offsets_and_positions_round_trip(text, encoding):
    for offset in _boundaries(text):
        assert offset_at(text, position_at(text, offset, encoding), encoding) == offset


def test_a_batch_of_changes_applies_in_order():
    store = DocumentStore()
    store.open(URI, "hello\nworld\n", version=1)
    store.change(URI, 2, [
        Change("HELLO", Range(Position(0, 0), Position(0, 5))),
        Change("!", Range(Position(1, 5), Position(1, 5))),  # relative to the text after the first change
        Change("there ", Range(Position(1, 0), Position(1, 0))),
    ])
    assert store.get(URI).text == "HELLO\nthere world!\n"
    store.change(URI, 3, [Change("all new")])  # a change without a range replaces everything
    assert store.get(URI).text == "all new"


def test_utf16_counts_surrogate_pairs():
    text = "x = '😀😀' + y\n"
    # In UTF-16 each emoji is two code units: 'y' is at character 13, not 11.
    assert offset_at(text, Position(0, 13), "utf-16") == text.index("y")
    assert offset_at(text, Position(0, 11), "utf-32") == text.index("y")
    assert offset_at(text, Position(0, 17), "utf-8") == text.index("y")  # 4 bytes an emoji
    assert position_at(text, text.index("y"), "utf-16") == Position(0, 13)
    with pytest.raises(InvalidRequestError, match="inside a character"):
        offset_at(text, Position(0, 6), "utf-16")  # between the halves of the first emoji


def test_utf16_edit_after_an_emoji():
    store = DocumentStore("utf-16")
    store.open(URI, "a😀b\n", version=0)
    store.change(URI, 1, [Change("X", Range(Position(0, 3), Position(0, 4)))])  # replace 'b'
    assert store.get(URI).text == "a😀X\n"


def test_crlf_lines():
    text = "ab\r\ncd\r\n\r\nef"
    assert line_starts(text) == [0, 4, 8, 10]
    assert offset_at(text, Position(1, 2), "utf-16") == 6  # end of "cd", before its \r\n
    assert offset_at(text, Position(2, 0), "utf-16") == 8  # the empty line
    assert offset_at(text, Position(3, 2), "utf-16") == len(text)
    with pytest.raises(InvalidRequestError, match="past the end of line 1"):
        offset_at(text, Position(1, 3), "utf-16")  # would land between \r and \n
    store = DocumentStore()
    store.open(URI, text, version=1)
    store.change(URI, 2, [Change("X", Range(Position(1, 0), Position(2, 0)))])
    assert store.get(URI).text == "ab\r\nX\r\nef"


def test_lone_cr_ends_a_line():
    assert offset_at("a\rb", Position(1, 1)) == 3


def test_past_the_end_is_an_error_with_the_reason():
    text = "one\ntwo\n"
    with pytest.raises(InvalidRequestError, match=r"position 0:4 is past the end of line 0 \(3 utf-16 code units\)"):
        offset_at(text, Position(0, 4))
    with pytest.raises(InvalidRequestError, match=r"position 3:0 is past the end of the document \(3 lines\)"):
        offset_at(text, Position(3, 0))
    with pytest.raises(InvalidRequestError, match="negative"):
        offset_at(text, Position(0, -1))
    assert offset_at(text, Position(2, 0)) == len(text)  # the empty last line exists


def test_a_bad_change_leaves_the_document_as_it_was():
    store = DocumentStore()
    store.open(URI, "abc", version=1)
    with pytest.raises(InvalidRequestError, match="change 1 of file:///t.py"):
        store.change(URI, 2, [Change("X", Range(Position(0, 0), Position(0, 1))),
                              Change("Y", Range(Position(5, 0), Position(5, 0)))])
    assert store.get(URI).text == "abc" and store.get(URI).version == 1


def test_versions_and_unknown_documents():
    store = DocumentStore()
    store.open(URI, "abc", version=3)
    with pytest.raises(InvalidRequestError, match="version 3 of file:///t.py is not newer than version 3"):
        store.change(URI, 3, [Change("x")])
    store.change(URI, 4, [Change("x")])
    assert store.get(URI).version == 4
    with pytest.raises(InvalidRequestError, match="is not open"):
        store.get("file:///other.py")
    store.close(URI)
    assert URI not in store
    with pytest.raises(InvalidRequestError, match="cannot be closed"):
        store.close(URI)
    with pytest.raises(InvalidRequestError, match="unknown position encoding"):
        DocumentStore("utf-7")
