"""Repository context in the prompt (repo_prompt.py): the format the vocabulary allows, the markers as
special tokens and the files' text as plain text, before the FIM markers or at the code's start."""

import string

import pytest
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers

from loopcoder.engine.tokenizer import Tokenizer
from loopcoder.lsp.features.context.gather import Candidate, ContextKeeper
from loopcoder.lsp.features.context.repo_prompt import (ContextFile, RepoContext, comment_marker, context_ids,
                                                        repo_format)

FIM = {"qwen": ["<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"],
       "starcoder": ["<fim_prefix>", "<fim_suffix>", "<fim_middle>"]}
REPO = {"qwen": ["<|repo_name|>", "<|file_sep|>"], "starcoder": ["<repo_name>", "<file_sep>"]}
CONTEXT = RepoContext("shop", "app/main.py", (ContextFile("app/cart.py", "def total(items):\n    ..."),
                                              ContextFile("lib/<|file_sep|>.py", "X = 1")))


def tokenizer(special: list[str]) -> Tokenizer:
    """Characters as tokens, and `special` as special tokens."""
    vocab = {c: i for i, c in enumerate(string.printable + "…")}
    hf = HFTokenizer(models.WordLevel(vocab, unk_token="…"))
    hf.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    hf.decoder = decoders.Fuse()
    hf.add_special_tokens(special)
    return Tokenizer(hf)


@pytest.mark.parametrize("family", ["qwen", "starcoder"])
def test_repository_tokens_go_before_the_fim_markers(family):
    tok = tokenizer([*FIM[family], *REPO[family]])
    assert repo_format(tok) == family
    ids = context_ids(tok, CONTEXT, family)
    assert ids.lead == []
    repo, sep = (tok.token_to_id(t) for t in REPO[family])
    assert ids.before[0] == repo and ids.before.count(sep) == 3  # two files, then the current one
    text = tok.decode(ids.before)
    newline = "\n" if family == "qwen" else ""
    assert text == (f"{REPO[family][0]}shop{newline}{REPO[family][1]}app/cart.py\ndef total(items):\n    ...\n"
                    f"{REPO[family][1]}lib/<|file_sep|>.py\nX = 1\n{REPO[family][1]}app/main.py\n")
    prompt = tok.fim_ids(tok.encode("x = ", parse_special=False), tok.encode("\n", parse_special=False),
                         before=ids.before)
    assert prompt[: len(ids.before)] == ids.before and prompt[len(ids.before)] == tok.token_to_id(FIM[family][0])


def test_other_models_get_path_comments_at_the_start_of_the_code():
    tok = tokenizer(FIM["qwen"])
    assert repo_format(tok) == "comments"
    ids = context_ids(tok, RepoContext("shop", "web/app.ts", CONTEXT.files), "comments")
    assert ids.before == []
    assert tok.decode(ids.lead) == ("# app/cart.py\ndef total(items):\n    ...\n\n# lib/<|file_sep|>.py\nX = 1\n\n"
                                    "// web/app.ts\n")


def test_a_forced_format_needs_its_tokens():
    tok = tokenizer(FIM["qwen"])
    assert repo_format(tok, "comments") == "comments"
    with pytest.raises(ValueError, match="lacks the qwen format's tokens"):
        repo_format(tok, "qwen")
    with pytest.raises(ValueError, match="use one of qwen, starcoder, comments"):
        repo_format(tok, "xml")


@pytest.mark.parametrize("path, marker", [("a.py", "#"), ("a.rs", "//"), ("q.sql", "--"), ("x.tex", "%"),
                                          ("Makefile", "#"), ("a.TS", "//")])
def test_comment_markers(path, marker):
    assert comment_marker(path) == marker


def _candidate(key: str, score: float, text: str = "x" * 10) -> Candidate:
    return Candidate(key, f"/w/{key}.py", text, score, "definition")


def test_the_kept_context_does_not_move_while_nothing_new_is_wanted():
    keeper = ContextKeeper(budget=60, count=len)
    first = keeper.update([_candidate("a", 1.0), _candidate("b", 0.5)])
    assert [c.key for c in first] == ["a", "b"]
    again = keeper.update([_candidate("b", 0.9), _candidate("a", 0.1)])  # reranked, nothing new
    assert again is first
    grown = keeper.update([_candidate("c", 2.0), _candidate("a", 1.0)])  # new: appended, the others stay first
    assert [c.key for c in grown] == ["a", "b", "c"]


def test_a_full_budget_drops_what_the_ranking_no_longer_wants():
    keeper = ContextKeeper(budget=45, count=len)  # each candidate costs len("/w/k.py\n" + 10 x + "\n") + 1 = 20
    keeper.update([_candidate("a", 1.0), _candidate("b", 0.5)])
    after = keeper.update([_candidate("c", 2.0), _candidate("a", 1.0)])
    assert [c.key for c in after] == ["a", "c"]  # b is no longer wanted: it made room, a kept its place
    changed = keeper.update([_candidate("a", 1.0, "y" * 10), _candidate("c", 2.0)])  # a's text changed
    assert [c.key for c in changed] == ["c", "a"] and changed[1].text == "y" * 10
