"""The one object that tells attention where each sequence's queries and keys live.

A forward step runs a batch of B sequences whose new tokens are flattened into T rows.
Sequence b owns query rows `query_start[b] : query_start[b+1]`; those rows are its
newest tokens, so after this step's K/V writes the sequence holds `context_lens[b]`
tokens in the cache and its queries sit at positions
`context_lens[b] - n_q .. context_lens[b] - 1`.

Paged layout (block_size tokens a block)::

    slot = block_tables[b, pos // block_size] * block_size + pos % block_size
    k_cache.view(-1, Hkv, D)[slot]  is the key of token `pos` of sequence b
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class AttentionMetadata:
    positions: torch.Tensor  # (T,) int64: absolute position of each query row
    slot_mapping: torch.Tensor  # (T,) int64: flat cache slot each query row's K/V is written to
    block_tables: torch.Tensor  # (B, max_blocks) int64, padded with 0 past each sequence's blocks
    block_tables_host: list[list[int]]  # the same, unpadded, on the host
    query_start: list[int]  # B+1 host ints: cumulative query counts
    context_lens: list[int]  # B host ints: tokens in cache per sequence after this step
    block_size: int
    # Per sequence: the first block-table index from which its blocks are consecutive ids,
    # so pages from there on can be read as one slice of the cache instead of a gather.
    contiguous_from: list[int]
    # Set on the steps of a captured CUDA graph (engine/cuda_graphs.py): the decode kernels'
    # split count is fixed, and the host lists describe the graph's bounds, not this step.
    decode_splits: int | None = None
    # Set on a captured prefill step: its tile map (kernels/attention/prefill_plan.py), filled on the device.
    prefill_tiles: torch.Tensor | None = None
    prefill_splits: int | None = None  # and its key splits per tile (split-K)

    @property
    def num_seqs(self) -> int:
        return len(self.context_lens)

    @classmethod
    def build(
        cls,
        block_tables: list[list[int]],
        start_positions: list[int],
        query_lens: list[int],
        block_size: int,
        device: torch.device | str = "cpu",
    ) -> "AttentionMetadata":
        """Metadata for sequences whose new tokens start at `start_positions[b]`."""
        positions: list[int] = []
        slots: list[int] = []
        query_start = [0]
        for table, start, n in zip(block_tables, start_positions, query_lens):
            if (start + n + block_size - 1) // block_size > len(table):
                raise ValueError(f"block table of {len(table)} blocks cannot hold {start + n} tokens")
            for pos in range(start, start + n):
                positions.append(pos)
                slots.append(table[pos // block_size] * block_size + pos % block_size)
            query_start.append(query_start[-1] + n)
        width = max(len(t) for t in block_tables)
        padded = [t + [0] * (width - len(t)) for t in block_tables]
        return cls(
            positions=torch.tensor(positions, dtype=torch.int64, device=device),
            slot_mapping=torch.tensor(slots, dtype=torch.int64, device=device),
            block_tables=torch.tensor(padded, dtype=torch.int64, device=device),
            block_tables_host=block_tables,
            query_start=query_start,
            context_lens=[s + n for s, n in zip(start_positions, query_lens)],
            block_size=block_size,
            contiguous_from=[_contiguous_from(t) for t in block_tables],
        )


def _contiguous_from(table: list[int]) -> int:
    i = len(table) - 1
    while i > 0 and table[i - 1] + 1 == table[i]:
        i -= 1
    return max(i, 0)
