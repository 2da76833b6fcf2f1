"""Parallel layers. Column-parallel projections need no class of their own: they are
plain `nn.Linear`s holding this rank's output rows, and their outputs stay local."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .group import TensorParallelGroup


def vocab_range(vocab_size: int, rank: int, world_size: int) -> tuple[int, int]:
    """Rank r's rows [start, end) of the vocabulary: ceil(V / n) each, the last one shorter."""
    per_rank = -(-vocab_size // world_size)
    start = min(rank * per_rank, vocab_size)
    return start, min(start + per_rank, vocab_size)


class RowParallelLinear(nn.Module):
    """y = sum over ranks of x_r @ W_r^T (+ bias), where x_r and W_r are this rank's input
    columns; the bias, whole on every rank, is added once, after the sum. Quantizing it
    (engine/quantization.py) gives a QuantLinear that keeps the all-reduce."""

    row_parallel = True

    def __init__(self, weight: torch.Tensor, tp: TensorParallelGroup, bias: torch.Tensor | None = None) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight, requires_grad=False)  # (out, in / world_size)
        self.bias = None if bias is None else nn.Parameter(bias, requires_grad=False)  # (out,)
        self.tp = tp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.tp.all_reduce(F.linear(x, self.weight))
        return out if self.bias is None else out + self.bias


class VocabParallelEmbedding(nn.Module):
    """Each rank holds rows [start, end); ids outside give zeros; the sum over ranks is the embedding."""

    def __init__(self, weight: torch.Tensor, start: int, tp: TensorParallelGroup) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight, requires_grad=False)  # (end - start, hidden)
        self.start, self.end, self.tp = start, start + weight.shape[0], tp

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        inside = (ids >= self.start) & (ids < self.end)  # (T,)
        local = torch.where(inside, ids - self.start, 0)
        out = F.embedding(local, self.weight) * inside.unsqueeze(-1).to(self.weight.dtype)  # (T, hidden)
        return self.tp.all_reduce(out)


class VocabParallelLMHead(nn.Module):
    """Each rank computes the logits of its vocabulary rows; all ranks gather all of them."""

    def __init__(self, weight: nn.Parameter, vocab_size: int, tp: TensorParallelGroup) -> None:
        super().__init__()
        self.weight = weight  # (rows, hidden); shared with the embedding when tied
        self.vocab_size, self.tp = vocab_size, tp
        self.padded_rows = -(-vocab_size // tp.world_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        local = F.linear(hidden, self.weight)  # (n, rows)
        pad = self.padded_rows - local.shape[-1]
        if pad:  # all_gather needs equal shapes: the last rank may hold fewer rows
            local = F.pad(local, (0, pad))
        return self.tp.all_gather_last_dim(local)[..., : self.vocab_size]  # (n, V)
