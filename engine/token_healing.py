"""Token healing: let the model re-choose the prompt's last token.

A prompt that ends mid-token ("    " before a statement, "def fib" before "onacci")
ends in a token the model rarely saw in that position, and completions suffer. The
fix (as in Microsoft's guidance): drop the last prompt token, and constrain the first
generated token to ones whose text starts with the dropped text. The dropped text is
then cut from what the client sees.

The front end's half, `tokenizer.split_last_token`, drops the token; this module is the
engine's half, which constrains the first sampled token.
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


def restrict_to(logits: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """logits (V,) with everything outside `allowed` at -inf."""
    out = torch.full_like(logits, float("-inf"))
    out[allowed] = logits[allowed]
    return out
