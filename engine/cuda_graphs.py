"""CUDA graphs for the small steps: decode batches, and one document's short prefill (a keystroke).

An eager step of a large model is bound by the host: hundreds of kernel launches (about
15 per layer, twice over for a Loop model) at several microseconds of Python each,
against a few microseconds of device time apiece. A captured graph launches them all at
once. Two kinds of step are captured, lazily, the first time each size is needed, into
one shared memory pool:

- decode: B rows, one per sequence, for B in GRAPH_BATCH_SIZES (a batch of 3 replays
  the graph of 4);
- extend: one sequence's T new tokens on top of its cached ones, for T up to 512 in
  EXTEND_SIZES buckets (257 tokens replay the graph of 320): the re-prefill after an
  edit, which is what a keystroke costs in a warm document.

What a graph needs, and how this module provides it:

- Fixed addresses. Each graph reads its inputs from slices of static buffers: `io`
  (3, rows) int64 holds the token ids, positions and cache slots of the rows, `tables`
  the block tables, and an extend graph also its attention tile map (`tiles`) and the
  index of its last real row (`last`). A step copies its rows into them and replays.
- No host values that change between steps. The decode kernels take their split count
  from the metadata (`decode_splits`) and cut each sequence's keys on the device; the
  prefill kernel takes its tile map from the metadata (`prefill_tiles`), whose tiles past
  the step's rows hold no queries; RoPE's table is built up front for every position
  below `max_context`.
- Rows past the step. Padding rows read and write only a scratch block of the KV cache
  that the block pool never hands out, at position 0, and no attention tile covers them
  (their outputs are never read: every op but attention works row by row).

Steps that do not fit (a chunk of a long prompt, several prompts in one step, more rows
than the largest graph, a position at or past `max_context`) run eagerly. A step's
logits are copied out of the graph's output before the next replay can overwrite them.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

import torch

from loopcoder.kernels.attention import AttentionMetadata, decode_blocker, decode_splits
from loopcoder.kernels.attention.prefill_plan import TILE_FIELDS, graph_prefill_splits, queries_per_tile
from loopcoder.kernels.dispatch import kernel_mode, triton_import_error

from .config import ModelConfig

if TYPE_CHECKING:
    from .kv_cache import KVCache
    from .model_runner import StepInput
    from .models.llama import LlamaForCausalLM

log = logging.getLogger(__name__)

GRAPHS_ENV = "LOOPCODER_CUDA_GRAPHS"  # "0": every step eager (the engine's cuda_graphs=False, for any front end)
GRAPH_BATCH_SIZES = (1, 2, 4, 8, 16, 32)
# Rows of the extend graphs: finer where a keystroke's re-prefill usually lands (the edit plus
# the bounded suffix, a few hundred tokens), so that padding wastes at most a quarter.
EXTEND_SIZES = (16, 32, 64, 128, 192, 256, 320, 384, 448, 512)
_BLOCK_N = 64  # the decode kernels' key tile (kernels.attention.DecodeLaunch.block_n)


class GraphCaptureError(RuntimeError):
    """A step could not be captured; the runner goes on without graphs."""


def cuda_graphs_blocker(config: ModelConfig, dtype: torch.dtype, device: torch.device | str) -> str | None:
    """Why decode steps of this model on `device` cannot be captured (None: they can). They
    need CUDA and the Triton decode kernels for the model's head layout and dtype: the
    reference attention reads host lists that a graph would freeze."""
    device = torch.device(device)
    if device.type != "cuda":
        return f"the engine runs on {device.type}"
    if os.environ.get(GRAPHS_ENV, "1").strip() == "0":
        return f"{GRAPHS_ENV}=0"
    if kernel_mode() == "torch":
        return "LOOPCODER_KERNELS=torch"
    if triton_import_error() is not None:
        return f"triton is not importable ({triton_import_error()})"
    q = torch.empty(1, config.num_attention_heads, config.head_dim, dtype=dtype, device=device)
    cache = torch.empty(1, 16, config.num_key_value_heads, config.head_dim, dtype=dtype, device=device)
    return decode_blocker(q, cache, cache)


class StepGraphs:
    """Captured decode and extend forwards of `model` over `kv` (see the module docstring)."""

    def __init__(self, model: LlamaForCausalLM, kv: KVCache, scratch_block: int, max_context: int,
                 batch_sizes: tuple[int, ...] = GRAPH_BATCH_SIZES, extend_sizes: tuple[int, ...] = EXTEND_SIZES) -> None:
        if not batch_sizes or min(batch_sizes) < 1 or (extend_sizes and min(extend_sizes) < 2):
            raise ValueError(f"graph sizes must be positive (extend sizes at least 2), got {batch_sizes}, {extend_sizes}")
        self.model, self.kv = model, kv
        self.device = kv.k.device
        self.block_size = kv.block_size
        self.scratch_block = scratch_block
        self.max_context = max_context
        self.max_blocks = -(-max_context // self.block_size)
        self.batch_sizes = tuple(sorted(set(batch_sizes)))
        self.extend_sizes = tuple(sorted(set(extend_sizes)))
        cfg = model.config
        self.queries_per_tile = queries_per_tile(kv.k.dtype, cfg.head_dim, cfg.num_attention_heads // cfg.num_key_value_heads)
        rows = max(self.batch_sizes[-1], self.extend_sizes[-1] if self.extend_sizes else 0)
        self.io = torch.zeros(3, rows, dtype=torch.int64, device=self.device)
        self.io[2].fill_(scratch_block * self.block_size)
        self.tables = torch.full((self.batch_sizes[-1], self.max_blocks), scratch_block, dtype=torch.int64,
                                 device=self.device)
        max_tiles = -(-self.extend_sizes[-1] // self.queries_per_tile) if self.extend_sizes else 1
        self.tiles = torch.zeros(max_tiles, TILE_FIELDS, dtype=torch.int32, device=self.device)
        self.last = torch.zeros(1, dtype=torch.int64, device=self.device)
        self._graphs: dict[tuple[str, int], tuple[torch.cuda.CUDAGraph, torch.Tensor]] = {}
        self._pool = None
        self.replays = 0
        model.model.layers[0].self_attn.rotary.reserve(max_context, self.device)

    @property
    def max_batch(self) -> int:
        return self.batch_sizes[-1]

    def _kind(self, batch: list[StepInput]) -> tuple[str, int] | None:
        """The graph that can run this step: ("decode", B) or ("extend", T), or None."""
        if not batch or len(batch) > self.max_batch:
            return None
        if all(len(s.token_ids) == 1 and s.start < self.max_context for s in batch):
            return "decode", next(size for size in self.batch_sizes if size >= len(batch))
        if len(batch) == 1 and self.extend_sizes:
            (step,) = batch
            n = len(step.token_ids)
            if 1 < n <= self.extend_sizes[-1] and step.start + n <= self.max_context:
                return "extend", next(size for size in self.extend_sizes if size >= n)
        return None

    def fits(self, batch: list[StepInput]) -> bool:
        """Whether this step can replay a graph (see `_kind`)."""
        return self._kind(batch) is not None

    def _meta(self, kind: str, size: int) -> AttentionMetadata:
        scratch = [self.scratch_block]
        if kind == "decode":
            return AttentionMetadata(
                positions=self.io[1, :size], slot_mapping=self.io[2, :size], block_tables=self.tables[:size],
                block_tables_host=[scratch] * size,  # read by the reference path only, which graphs never take
                query_start=list(range(size + 1)),
                context_lens=[self.max_context] * size,  # bounds: RoPE's table covers every position below
                block_size=self.block_size, contiguous_from=[0] * size,
                decode_splits=decode_splits(size * self.model.config.num_key_value_heads, self.max_context,
                                            self.device, _BLOCK_N),
            )
        cfg = self.model.config
        num_tiles = -(-size // self.queries_per_tile)
        return AttentionMetadata(
            positions=self.io[1, :size], slot_mapping=self.io[2, :size], block_tables=self.tables[:1],
            block_tables_host=[scratch], query_start=[0, size], context_lens=[self.max_context],
            block_size=self.block_size, contiguous_from=[0], prefill_tiles=self.tiles[:num_tiles],
            prefill_splits=graph_prefill_splits(self.kv.k.dtype, cfg.head_dim,
                                                cfg.num_attention_heads // cfg.num_key_value_heads, num_tiles,
                                                cfg.num_key_value_heads, self.max_context, self.device),
        )

    def _forward(self, kind: str, size: int, meta: AttentionMetadata) -> torch.Tensor:
        hidden = self.model(self.io[0, :size], meta, self.kv)
        if kind == "extend":
            hidden = hidden.index_select(0, self.last)  # the last real row's
        return self.model.compute_logits(hidden)

    def _capture(self, kind: str, size: int) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
        # The static rows hold padding (position 0 in the scratch block, no tiles) while capturing.
        self.io[:, :size] = torch.tensor([[0], [0], [self.scratch_block * self.block_size]], device=self.device)
        self.tables[: (size if kind == "decode" else 1), 0] = self.scratch_block
        self.tiles.zero_()
        self.last.zero_()
        meta = self._meta(kind, size)
        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream):  # compiles the Triton kernels and settles the allocator
            for _ in range(2):
                self._forward(kind, size, meta)
        torch.cuda.current_stream(self.device).wait_stream(stream)
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool):
            out = self._forward(kind, size, meta)
        log.info("captured a CUDA graph for %s steps of %d rows", kind, size)
        return graph, out

    def run(self, batch: list[StepInput]) -> torch.Tensor:
        """Float32 logits of a step that `fits`: (len(batch), vocab) for decode, (1, vocab) for extend."""
        key = self._kind(batch)
        if key is None:
            raise ValueError("this step fits no CUDA graph; check fits() first")
        kind, size = key
        if key not in self._graphs:
            try:
                self._graphs[key] = self._capture(kind, size)
            except RuntimeError as exc:  # an op that cannot be captured (a driver, a collective)
                raise GraphCaptureError(f"capturing the {kind} step of {size} rows failed: {exc}") from exc
        graph, out = self._graphs[key]
        if kind == "decode":
            io, tables = self.pack(batch, size)
            self.io[:, :size].copy_(io)
            self.tables[:size, : tables.shape[1]].copy_(tables)
        else:
            io, table, tiles, last = self.pack_extend(batch[0], size)
            self.io[:, :size].copy_(io)
            self.tables[:1, : table.shape[1]].copy_(table)
            self.tiles[: tiles.shape[0]].copy_(tiles)
            self.last.copy_(last)
        graph.replay()
        self.replays += 1
        return out[: len(batch)].clone()

    def pack(self, batch: list[StepInput], size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A decode step's rows as the graph of `size` reads them, on the host: io (3, size) =
        token ids, positions, cache slots; tables (size, width), width = the most blocks any
        row reads (columns past it keep older values, which no kernel reads). Rows past the
        batch are padding in the scratch block."""
        bs, pad_slot = self.block_size, self.scratch_block * self.block_size
        ids, positions, slots = [0] * size, [0] * size, [pad_slot] * size
        width = max(s.start // bs for s in batch) + 1
        tables = [[self.scratch_block] * width for _ in range(size)]
        for i, s in enumerate(batch):
            ids[i], positions[i] = s.token_ids[0], s.start
            used = s.start // bs + 1
            slots[i] = s.block_table[used - 1] * bs + s.start % bs
            tables[i][:used] = s.block_table[:used]
        return torch.tensor([ids, positions, slots], dtype=torch.int64), torch.tensor(tables, dtype=torch.int64)

    def pack_extend(self, step: StepInput, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One sequence's n new tokens as the extend graph of `size` rows reads them, on the host:
        io (3, size) as in `pack` (rows n.. padding), its block table (1, width), the tile map
        (one tile per queries_per_tile rows: sequence 0, first row, real queries, first
        position; tiles past the n rows hold none) and the last real row's index."""
        bs, n, start = self.block_size, len(step.token_ids), step.start
        positions = list(range(start, start + n))
        slots = [step.block_table[p // bs] * bs + p % bs for p in positions]
        pad = size - n
        io = torch.tensor([list(step.token_ids) + [0] * pad, positions + [0] * pad,
                           slots + [self.scratch_block * bs] * pad], dtype=torch.int64)
        width = (start + n - 1) // bs + 1
        table = torch.tensor([step.block_table[:width]], dtype=torch.int64)
        per_tile = self.queries_per_tile
        tiles = []
        for row in range(0, size, per_tile):
            real = max(0, min(per_tile, n - row))
            tiles.append((0, row, real, start + row if real else 0))
        return io, table, torch.tensor(tiles, dtype=torch.int32), torch.tensor([n - 1], dtype=torch.int64)

    @property
    def captured(self) -> tuple[int, ...]:
        """Batch sizes of the captured decode graphs."""
        return tuple(sorted(size for kind, size in self._graphs if kind == "decode"))

    @property
    def captured_extend(self) -> tuple[int, ...]:
        """Row counts of the captured extend graphs."""
        return tuple(sorted(size for kind, size in self._graphs if kind == "extend"))
