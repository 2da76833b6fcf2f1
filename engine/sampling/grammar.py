"""Grammar-constrained decoding: JSON schemas through llguidance.

`GrammarVocab` is llguidance's view of the engine's tokenizer (a token trie), sized to the
model's vocab; an engine builds it once. `GrammarConstraint` is one request's matcher:
before each sample it sets every token the grammar forbids to -inf, and after the sample
it consumes the token.

The mask is llguidance's bitmask, one bit per token id, packed into int32 words::

    word t // 32, bit t % 32  ->  token t allowed      (unpacked little-endian, as llguidance writes it)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import llguidance
import numpy as np
import torch
from llguidance.numpy import allocate_token_bitmask, fill_next_token_bitmask

from ..errors import ConstrainedDecodingError, InvalidRequestError, TokenizerError
from .schema import PARSER_LIMITS, json_schema_grammar

if TYPE_CHECKING:
    from ..tokenizer import Tokenizer

class GrammarVocab:
    """llguidance's tokenizer for one engine: the token trie plus the model's vocab size.

    Building it walks the whole vocab (about 0.2 s for 49k tokens), so an engine builds it
    once, on its first constrained request.
    """

    def __init__(self, tokenizer: Tokenizer, model_vocab_size: int):
        self.model_vocab_size = model_vocab_size
        # Ids the model can emit that have text; the model's embedding may have padding rows past the tokenizer.
        self.text_vocab_size = min(tokenizer.vocab_size, model_vocab_size)
        self.eos_ids = frozenset(tokenizer.eos_ids)
        try:
            self.ll_tokenizer = llguidance.LLTokenizer(
                tokenizer.hf.to_str(), n_vocab=max(tokenizer.vocab_size, model_vocab_size),
                eos_token=list(tokenizer.eos_ids) or None)
        except ValueError as exc:
            raise TokenizerError(f"llguidance cannot read this tokenizer: {exc}") from exc


class GrammarConstraint:
    """One request's grammar state: which tokens may come next, and when the output is complete."""

    def __init__(self, vocab: GrammarVocab, grammar: str):
        self._vocab = vocab
        self._matcher = llguidance.LLMatcher(vocab.ll_tokenizer, grammar, log_level=0, limits=PARSER_LIMITS)
        if self._matcher.is_error():
            raise InvalidRequestError(f"json_schema is not supported: {self._matcher.get_error()}")
        self._bitmask = allocate_token_bitmask(1, vocab.ll_tokenizer.vocab_size)  # (1, words) int32

    @classmethod
    def for_json_schema(cls, vocab: GrammarVocab, schema: object) -> GrammarConstraint:
        return cls(vocab, json_schema_grammar(schema))

    @property
    def done(self) -> bool:
        """The grammar is complete and admits nothing more (end of sequence at most)."""
        return self._matcher.is_stopped()

    def is_end(self, token_id: int) -> bool:
        """An end-of-sequence token: the mask lets one through only once the grammar is complete."""
        return token_id in self._vocab.eos_ids

    def forbidden(self) -> np.ndarray:
        """(model_vocab_size,) bool: True for each token the grammar does not allow next."""
        fill_next_token_bitmask(self._matcher, self._bitmask)
        self._raise_if_error()
        # Inverting the words first yields "forbidden" straight from the unpack.
        packed = np.invert(self._bitmask[0]).view(np.uint8)
        forbidden = np.unpackbits(packed, count=self._vocab.model_vocab_size, bitorder="little").view(np.bool_)
        forbidden[self._vocab.text_vocab_size:] = True  # padding rows have no text
        if forbidden.all():
            raise ConstrainedDecodingError("the grammar allows no token of this model's vocab here")
        return forbidden

    def mask(self, logits: torch.Tensor) -> torch.Tensor:
        """`logits` (V,) with every token the grammar forbids at -inf, on the logits' device."""
        forbidden = torch.from_numpy(self.forbidden()).to(logits.device)
        return logits.masked_fill(forbidden, float("-inf"))

    def consume(self, token_id: int) -> None:
        """Advance the grammar past a sampled token."""
        if not self._matcher.consume_token(token_id):
            raise ConstrainedDecodingError(f"the grammar rejected token {token_id}: {self._error()}")

    def _raise_if_error(self) -> None:
        if self._matcher.is_error():
            raise ConstrainedDecodingError(f"the grammar matcher failed: {self._error()}")

    def _error(self) -> str:
        lines = self._matcher.get_error().strip().splitlines()
        return lines[0] if lines else "no reason given"
