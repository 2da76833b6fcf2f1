"""How a prefill is cut for the Triton prefill kernels (`prefill`, whose docstring draws the
tiles): the launch (tile shape, warps, stages), the key splits per tile (split-K), and the
tile map the host sends the kernel. A captured CUDA graph lays out its own tile map with
the same plan (engine/cuda_graphs.py: `queries_per_tile`, `graph_prefill_splits`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from ..device import multiprocessors
from .common import triton
from .metadata import AttentionMetadata

TILE_FIELDS = 4  # sequence, first query row, number of queries, position of the first query


@dataclass(frozen=True)
class PrefillLaunch:
    """How a prefill kernel is cut; None fields: `default_launch` decides."""

    block_m: int | None = None  # rows of a query tile: queries x n_rep heads, padded to a power of two
    block_n: int | None = None  # keys per step of the inner loop
    num_warps: int | None = None
    num_stages: int | None = None
    num_splits: int | None = None  # key splits per tile (split-K); None: prefill_splits() decides


def default_launch(dtype: torch.dtype, head_dim: int, gated: bool, launch: PrefillLaunch) -> PrefillLaunch:
    """Fill launch's unset fields. 16-bit, D <= 128: 128 x 64 tiles, 3 stages, 4 warps (8 for the
    Loop kernel's two accumulators), the best of `benchmarks/prefill_attention.py --sweep` on an
    H200 (40/8 heads, D 128, bf16, an 8K prefill and a 512 chunk on 32K). fp32 and D 256: smaller
    tiles, so that the wide rows fit the registers and shared memory (chosen for fitting, not timed)."""
    if dtype.itemsize == 4 or head_dim > 128:
        chosen = PrefillLaunch(block_m=64, block_n=32, num_warps=4, num_stages=2)
    else:
        chosen = PrefillLaunch(block_m=128, block_n=64, num_warps=8 if gated else 4, num_stages=3)
    return PrefillLaunch(
        block_m=launch.block_m or chosen.block_m,
        block_n=launch.block_n or chosen.block_n,
        num_warps=launch.num_warps or chosen.num_warps,
        num_stages=launch.num_stages or chosen.num_stages,
        num_splits=launch.num_splits,
    )


# Split-K: the partials of one split of every (token, head) row take T * Hq * D * 4 bytes;
# the splits of one call stay under this.
SPLIT_BYTES = 64 << 20
MAX_SPLITS = 16


def prefill_splits(num_programs: int, span: int, rows: int, head_dim: int, device: torch.device, block_n: int) -> int:
    """Key splits per tile for `num_programs` (tile, KV head) programs whose keys span up to
    `span`: 1 when the programs fill the GPU or the keys are few (cold prefills, short
    documents); otherwise enough for about four programs per multiprocessor, a power of two,
    at least 4 key blocks per split, the partials of the `rows` (token, head) rows under
    SPLIT_BYTES. This is the short chunk on a long context: a keystroke's re-prefill."""
    if device.type != "cuda":
        return 1
    wanted = 4 * multiprocessors(device) // max(num_programs, 1)
    if wanted < 2:
        return 1
    cap = min(MAX_SPLITS, span // (4 * block_n), SPLIT_BYTES // max(rows * head_dim * 4, 1))
    splits = 1 << (min(wanted, max(cap, 1)).bit_length() - 1)
    return max(1, splits)


@functools.lru_cache(maxsize=16)
def _tile_map(query_start: tuple[int, ...], context_lens: tuple[int, ...], queries: int, device: torch.device):
    """(num_tiles, TILE_FIELDS) int32 on device; the same batch's layers share one (hence the cache)."""
    tiles = []
    for seq, context_len in enumerate(context_lens):
        row_lo, row_hi = query_start[seq], query_start[seq + 1]
        first_pos = context_len - (row_hi - row_lo)
        for row in range(row_lo, row_hi, queries):
            n = min(queries, row_hi - row)
            tiles.append((seq, row, n, first_pos + row - row_lo))
    tiles.sort(key=lambda t: -(t[3] + t[2]))  # most keys first: the causal tail of the batch ends together
    return torch.tensor(tiles, dtype=torch.int32, device=device)


def tile_map(meta: AttentionMetadata, queries: int, device: torch.device) -> torch.Tensor:
    return _tile_map(tuple(meta.query_start), tuple(meta.context_lens), queries, device)


def _full_launch(dtype: torch.dtype, head_dim: int, n_rep: int, gated: bool, launch: PrefillLaunch) -> PrefillLaunch:
    launch = default_launch(dtype, head_dim, gated, launch)
    if launch.block_m < n_rep:  # a tile holds at least one query's n_rep heads
        launch = PrefillLaunch(triton.next_power_of_2(n_rep), launch.block_n, launch.num_warps, launch.num_stages,
                               launch.num_splits)
    return launch


def graph_prefill_splits(dtype: torch.dtype, head_dim: int, n_rep: int, num_tiles: int, num_kv_heads: int,
                         span: int, device: torch.device) -> int:
    """The split count a captured prefill of num_tiles tiles fixes for every context up to span."""
    launch = _full_launch(dtype, head_dim, n_rep, False, PrefillLaunch())
    rows = num_tiles * (launch.block_m // n_rep) * num_kv_heads * n_rep
    return prefill_splits(num_tiles * num_kv_heads, span, rows, head_dim, device, launch.block_n)


def queries_per_tile(dtype: torch.dtype, head_dim: int, n_rep: int) -> int:
    """Query rows of one sequence a tile holds with the default launch (a CUDA graph's tile map
    is laid out with it: engine/cuda_graphs.py)."""
    return _full_launch(dtype, head_dim, n_rep, False, PrefillLaunch()).block_m // n_rep


def plan_tiles(q: torch.Tensor, k_cache: torch.Tensor, meta: AttentionMetadata, gated: bool,
               launch: PrefillLaunch) -> tuple[PrefillLaunch, int, torch.Tensor, int]:
    """(launch with every field set, n_rep, tile map, key splits). A captured step brings its
    own tile map (`meta.prefill_tiles`, laid out for the default launch), filled on the
    device each step, and its split count (`meta.prefill_splits`)."""
    n_rep = q.shape[1] // k_cache.shape[2]
    launch = _full_launch(q.dtype, q.shape[2], n_rep, gated, launch)
    if meta.prefill_tiles is not None:
        tiles = meta.prefill_tiles
        splits = launch.num_splits or meta.prefill_splits or 1
    else:
        tiles = tile_map(meta, launch.block_m // n_rep, q.device)
        splits = launch.num_splits or prefill_splits(tiles.shape[0] * k_cache.shape[2], max(meta.context_lens),
                                                     q.shape[0] * q.shape[1], q.shape[2], q.device, launch.block_n)
    return launch, n_rep, tiles, splits

