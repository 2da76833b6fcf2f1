"""Document store: incremental sync, position encodings, CRLF, past-the-end positions, losing and regaining sync."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loopcoder.engine.errors import InvalidRequestError
from loopcoder.lsp.features.documents import (
    Change,
    DocumentOutOfSyncError,
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
    assert offset_at(text, Position(1, 3), "utf-16") == 6  # past "cd": its end, never between \r and \n
    store = DocumentStore()
    store.open(URI, text, version=1)
    store.change(URI, 2, [Change("X", Range(Position(1, 0), Position(2, 0)))])
    assert store.get(URI).text == "ab\r\nX\r\nef"


def test_lone_cr_ends_a_line():
    assert offset_at("a\rb", Position(1, 1)) == 3


def test_a_character_past_the_line_end_defaults_back_to_the_line_length():
    # LSP, Position: "If the character value is greater than the line length it defaults back to the line length."
    text = "one\ntwo\n"
    assert offset_at(text, Position(0, 4)) == 3
    assert offset_at(text, Position(1, 99)) == 7
    line = "é😀\n"  # 3 UTF-16 code units, 6 UTF-8 bytes, 2 code points
    for encoding, past in (("utf-16", 4), ("utf-8", 7), ("utf-32", 3)):
        assert offset_at(line, Position(0, past), encoding) == 2, encoding


def test_the_line_after_the_last_is_the_documents_end():
    # Neovim's view of a file without a final newline has one line more than its text:
    # what it sends for an edit at the end of such a file reaches one line past the last.
    text = "a = 1\nb = 2"
    assert offset_at(text, Position(2, 0)) == len(text)
    assert offset_at(text, Position(2, 5)) == len(text)
    assert offset_at("one\ntwo\n", Position(3, 0)) == len("one\ntwo\n")
    assert offset_at("", Position(1, 0)) == 0


def test_two_lines_past_the_last_is_still_an_error():
    with pytest.raises(InvalidRequestError, match=r"position 3:0 is past the end of the document \(2 lines\)"):
        offset_at("a = 1\nb = 2", Position(3, 0))
    with pytest.raises(InvalidRequestError, match=r"position 4:0 is past the end of the document \(3 lines\)"):
        offset_at("one\ntwo\n", Position(4, 0))


def test_neovims_go_below_a_last_line_without_newline():
    """The didChange batch Neovim 0.12 sends for `Go   x` in "a = 1\nb = 2" (no final newline).

    Its first change replaces the final newline Neovim pretends is there, (1, 5)-(2, 0),
    with "\n\n". The server's text ends with a newline the buffer lacks (as it will on
    disk once Neovim writes it, 'fixeol'); every line agrees.
    """
    store = DocumentStore()
    store.open(URI, "a = 1\nb = 2", version=0)
    store.change(URI, 4, [Change("\n\n", Range(Position(1, 5), Position(2, 0)))]
                 + [Change(ch, Range(Position(2, i), Position(2, i))) for i, ch in enumerate("   x")])
    assert store.get(URI).text == "a = 1\nb = 2\n   x\n"
    assert store.get(URI).offset_at(Position(2, 4)) == len("a = 1\nb = 2\n   x")


def test_inverted_and_negative_ranges_are_still_rejected():
    for bad in (Range(Position(0, 2), Position(0, 1)),
                Range(Position(0, 9), Position(0, 5)),  # both past the line's end, but still backwards
                Range(Position(1, 0), Position(0, 0)),
                Range(Position(0, -1), Position(0, 0)),
                Range(Position(-1, 0), Position(0, 0))):
        store = DocumentStore()
        store.open(URI, "abc", version=1)
        with pytest.raises(DocumentOutOfSyncError, match="ends before it starts|negative"):
            store.change(URI, 2, [Change("X", bad)])
    with pytest.raises(InvalidRequestError, match="negative"):
        offset_at("abc", Position(0, -1))
    with pytest.raises(InvalidRequestError, match="negative"):
        offset_at("abc", Position(-1, 0))


def test_a_rejected_change_puts_the_document_out_of_sync_until_it_is_reopened():
    store = DocumentStore()
    store.open(URI, "abc", version=1)
    with pytest.raises(DocumentOutOfSyncError, match=r"file:///t.py is out of sync.*change 1 .*version 2.*"
                                                      r"position 5:0 is past the end of the document.*reopen"):
        store.change(URI, 2, [Change("X", Range(Position(0, 0), Position(0, 1))),
                              Change("Y", Range(Position(5, 0), Position(5, 0)))])
    # Every request for it answers the same error; later incremental changes are ignored, quietly:
    # the user has been told once.
    with pytest.raises(DocumentOutOfSyncError, match="position 5:0 is past the end"):
        store.get(URI)
    store.change(URI, 3, [Change("Z", Range(Position(0, 0), Position(0, 0)))])
    with pytest.raises(DocumentOutOfSyncError):
        store.get(URI)
    assert URI in store and not store.in_sync(URI)
    store.open(URI, "fresh", version=4)  # didOpen of the same URI (Neovim's :e! sends didClose first)
    assert store.get(URI).text == "fresh" and store.in_sync(URI)
    store.change(URI, 5, [Change("!", Range(Position(0, 5), Position(0, 5)))])
    assert store.get(URI).text == "fresh!"


def test_close_and_open_restore_sync():
    store = DocumentStore()
    store.open(URI, "abc", version=1)
    with pytest.raises(DocumentOutOfSyncError):
        store.change(URI, 2, [Change("X", Range(Position(0, 2), Position(0, 1)))])
    with pytest.raises(DocumentOutOfSyncError, match="ends before it starts"):
        store.get(URI)
    store.close(URI)
    store.open(URI, "abc", version=1)
    assert store.get(URI).text == "abc"


def test_a_full_text_change_restores_sync():
    store = DocumentStore()
    store.open(URI, "abc", version=1)
    with pytest.raises(DocumentOutOfSyncError):
        store.change(URI, 2, [Change("X", Range(Position(9, 0), Position(9, 0)))])
    store.change(URI, 3, [Change("whole\ntext")])  # the client's whole text: nothing of ours is left in it
    assert store.get(URI).text == "whole\ntext" and store.get(URI).version == 3
    # In one batch: a full text makes the changes before it irrelevant, bad ones included.
    store.change(URI, 4, [Change("X", Range(Position(9, 0), Position(9, 0))), Change("new"),
                          Change("!", Range(Position(0, 3), Position(0, 3)))])
    assert store.get(URI).text == "new!" and store.in_sync(URI)


def test_a_version_that_is_not_newer_puts_the_document_out_of_sync():
    store = DocumentStore()
    store.open(URI, "abc", version=3)
    with pytest.raises(DocumentOutOfSyncError, match="version 3 of file:///t.py is not newer than version 3"):
        store.change(URI, 3, [Change("x", Range(Position(0, 0), Position(0, 0)))])
    with pytest.raises(DocumentOutOfSyncError):
        store.get(URI)
    store.change(URI, 4, [Change("x")])
    assert store.get(URI).text == "x" and store.get(URI).version == 4


def test_versions_and_unknown_documents():
    store = DocumentStore()
    store.open(URI, "abc", version=3)
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
