"""Token sampling: a `Sampler` owns one request's random state, so a seeded request yields
the same tokens whatever else shares its batch; `sample_batch` samples a whole step.
"""

from __future__ import annotations

import os

import torch

from .params import SamplingParams

# float32 softmax sums carry ~1e-7 error; without slack, top_p=0.85 over probabilities
# 0.6 and 0.25 keeps a third token, because their float32 mass lands just below 0.85.
_TOP_P_SLACK = 1e-6


class Sampler:
    """Turns one request's logits into tokens, with its own seeded random stream."""

    def __init__(self, params: SamplingParams):
        self.params = params
        self.seed = params.seed if params.seed is not None else int.from_bytes(os.urandom(8), "little")
        # A CPU generator keeps seeded output independent of the device the logits came from.
        self.generator = torch.Generator(device="cpu").manual_seed(self.seed)

    def sample(self, logits: torch.Tensor) -> int:
        if self.params.is_greedy:
            return int(logits.argmax())  # first maximum wins, so ties go to the lowest id
        probs, token_ids = self._candidates(logits.detach().float().cpu())
        choice = torch.multinomial(probs, 1, generator=self.generator)
        return int(token_ids[choice])

    def _candidates(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Probabilities of the tokens that survive top-k and top-p, with their ids."""
        p = self.params
        # Shifting by the max first keeps tiny temperatures from overflowing to inf - inf.
        scaled = (logits - logits.max()) / p.temperature
        if p.top_k == 0 and p.top_p >= 1:
            return torch.softmax(scaled, dim=-1), torch.arange(scaled.numel())
        if p.top_k:
            # Select on the raw logits: shifting by the max can round two of them together.
            _, token_ids = torch.topk(logits, min(p.top_k, logits.numel()))
            values = scaled[token_ids]
        else:
            values, token_ids = torch.sort(scaled, descending=True, stable=True)
        probs = torch.softmax(values, dim=-1)
        if p.top_p < 1:
            keep = _nucleus_size(probs, p.top_p)
            probs, token_ids = probs[:keep], token_ids[:keep]
        return probs, token_ids


def _nucleus_size(sorted_probs: torch.Tensor, top_p: float) -> int:
    """Length of the shortest prefix whose probabilities sum to at least top_p."""
    mass_before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs
    return max(1, int((mass_before < top_p - _TOP_P_SLACK).sum()))


def sample_batch(logits: torch.Tensor, samplers: list[Sampler]) -> list[int]:
    """Sample one token per row; greedy rows share a single argmax."""
    if logits.dim() != 2 or logits.shape[0] != len(samplers):
        raise ValueError(f"logits of shape {tuple(logits.shape)} do not match {len(samplers)} samplers")
    tokens = [0] * len(samplers)
    greedy_rows = [i for i, s in enumerate(samplers) if s.params.is_greedy]
    if greedy_rows:
        picks = logits[greedy_rows].argmax(dim=-1).tolist()
        for row, token in zip(greedy_rows, picks):
            tokens[row] = token
    for row, sampler in enumerate(samplers):
        if not sampler.params.is_greedy:
            tokens[row] = sampler.sample(logits[row])
    return tokens
