"""Token healing: let the model re-choose the prompt's last token.

A prompt that ends mid-token ("    " before a statement, "def fib" before "onacci")
ends in a token the model rarely saw in that position, and completions suffer. The
fix (as in Microsoft's guidance): drop the last prompt token, and constrain the first
generated token to ones whose text starts with the dropped text. The dropped text is
then cut from what the client sees.
"""

from __future__ import annotations

import torch

from .tokenizer import Tokenizer


class TokenTexts:
    """Each token id's decoded text, built once per tokenizer on first use."""

    def __init__(self, tokenizer: Tokenizer, vocab_size: int) -> None:
        self._tokenizer = tokenizer
        self._vocab_size = vocab_size
        self._texts: list[str] | None = None

    def with_prefix(self, prefix: str) -> torch.Tensor:
        """Ids (int64) of non-special tokens whose text starts with `prefix`."""
        if self._texts is None:
            special = self._tokenizer.special_ids
            size = min(self._vocab_size, self._tokenizer.vocab_size)
            self._texts = ["" if i in special else self._tokenizer.decode([i]) for i in range(size)]
        return torch.tensor([i for i, t in enumerate(self._texts) if t.startswith(prefix) and t], dtype=torch.int64)


def split_last_token(tokenizer: Tokenizer, ids: list[int]) -> tuple[list[int], str]:
    """(ids without the last token, that token's text), or (ids, "") when it can't be healed."""
    if len(ids) < 2 or ids[-1] in tokenizer.special_ids:
        return ids, ""
    text = tokenizer.decode(ids[-1:])
    if not text or "\ufffd" in text:  # part of a multi-byte character: leave it alone
        return ids, ""
    return ids[:-1], text


def restrict_to(logits: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """logits (V,) with everything outside `allowed` at -inf."""
    out = torch.full_like(logits, float("-inf"))
    out[allowed] = logits[allowed]
    return out
