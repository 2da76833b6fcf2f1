"""CUDA graphs for decode steps: one captured forward per batch size, replayed every step.

An eager decode step of a large model is bound by the host: hundreds of kernel launches
(about 15 per layer, twice over for a Loop model) at several microseconds of Python
each, against a few microseconds of device time apiece. A captured graph launches them
all at once.

What a graph needs, and how this module provides it:

- Fixed addresses. Each captured batch size B reads its inputs from slices of the same
  static buffers: `io` (3, B_max) int64 holds the token ids, positions and cache slots of
  the rows, `tables` (B_max, max_blocks) int64 the block tables. A step copies its rows
  into them (two host-to-device copies) and replays the smallest graph that holds it.
- No host values that change between steps. The decode kernels take their split count
  from the metadata (`decode_splits`) and cut each sequence's keys on the device; RoPE's
  table is built up front for every position below `max_context`.
- Rows past the batch. A step of 3 sequences replays the graph of 4; the extra row reads
  and writes only a scratch block of the KV cache that the block pool never hands out,
  at position 0.

Steps that do not fit (a prompt chunk, more rows than the largest graph, a position at
or past `max_context`) run eagerly. Graphs are captured lazily, the first time a batch
size is needed, and share one memory pool. A step's logits are copied out of the graph's
output before the next replay can overwrite them.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import torch

from loopcoder.kernels.attention import decode_blocker, decode_splits
from loopcoder.kernels.dispatch import kernel_mode, triton_import_error

from .attention_metadata import AttentionMetadata
from .config import ModelConfig

if TYPE_CHECKING:
    from .kv_cache import KVCache
    from .model_runner import StepInput
    from .models.llama import LlamaForCausalLM

log = logging.getLogger(__name__)

GRAPH_BATCH_SIZES = (1, 2, 4, 8, 16, 32)
_BLOCK_N = 64  # the decode kernels' key tile (kernels.attention.DecodeLaunch.block_n)


class GraphCaptureError(RuntimeError):
    """A decode step could not be captured; the runner goes on without graphs."""


def cuda_graphs_blocker(config: ModelConfig, dtype: torch.dtype, device: torch.device | str) -> str | None:
    """Why decode steps of this model on `device` cannot be captured (None: they can). They
    need CUDA and the Triton decode kernels for the model's head layout and dtype: the
    reference attention reads host lists that a graph would freeze."""
    device = torch.device(device)
    if device.type != "cuda":
        return f"the engine runs on {device.type}"
    if kernel_mode() == "torch":
        return "LOOPCODER_KERNELS=torch"
    if triton_import_error() is not None:
        return f"triton is not importable ({triton_import_error()})"
    q = torch.empty(1, config.num_attention_heads, config.head_dim, dtype=dtype, device=device)
    cache = torch.empty(1, 16, config.num_key_value_heads, config.head_dim, dtype=dtype, device=device)
    return decode_blocker(q, cache, cache)


class DecodeGraphs:
    """Captured decode forwards of `model` over `kv`, for batches of up to max(batch_sizes) rows."""

    def __init__(self, model: LlamaForCausalLM, kv: KVCache, scratch_block: int, max_context: int,
                 batch_sizes: tuple[int, ...] = GRAPH_BATCH_SIZES) -> None:
        if not batch_sizes or min(batch_sizes) < 1:
            raise ValueError(f"graph batch sizes must be positive, got {batch_sizes}")
        self.model, self.kv = model, kv
        self.device = kv.k.device
        self.block_size = kv.block_size
        self.scratch_block = scratch_block
        self.max_context = max_context
        self.max_blocks = -(-max_context // self.block_size)
        self.batch_sizes = tuple(sorted(set(batch_sizes)))
        biggest = self.batch_sizes[-1]
        self.io = torch.zeros(3, biggest, dtype=torch.int64, device=self.device)
        self.io[2].fill_(scratch_block * self.block_size)
        self.tables = torch.full((biggest, self.max_blocks), scratch_block, dtype=torch.int64, device=self.device)
        self._graphs: dict[int, tuple[torch.cuda.CUDAGraph, torch.Tensor]] = {}
        self._pool = None
        self.replays = 0
        model.model.layers[0].self_attn.rotary.reserve(max_context, self.device)

    @property
    def max_batch(self) -> int:
        return self.batch_sizes[-1]

    def fits(self, batch: list[StepInput]) -> bool:
        """Whether this step can replay a graph: decode rows only, few enough, inside max_context."""
        return (len(batch) <= self.max_batch
                and all(len(s.token_ids) == 1 and s.start < self.max_context for s in batch))

    def _meta(self, size: int) -> AttentionMetadata:
        scratch = [self.scratch_block]
        return AttentionMetadata(
            positions=self.io[1, :size],
            slot_mapping=self.io[2, :size],
            block_tables=self.tables[:size],
            block_tables_host=[scratch] * size,  # read by the reference path only, which graphs never take
            query_start=list(range(size + 1)),
            context_lens=[self.max_context] * size,  # bounds: RoPE's table covers every position below
            block_size=self.block_size,
            contiguous_from=[0] * size,
            decode_splits=decode_splits(size * self.model.config.num_key_value_heads, self.max_context,
                                        self.device, _BLOCK_N),
        )

    def _forward(self, size: int, meta: AttentionMetadata) -> torch.Tensor:
        hidden = self.model(self.io[0, :size], meta, self.kv)
        return self.model.compute_logits(hidden)

    def _capture(self, size: int) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
        # The static rows hold padding (position 0 in the scratch block) while capturing.
        self.io[:, :size] = torch.tensor([[0], [0], [self.scratch_block * self.block_size]], device=self.device)
        self.tables[:size, 0] = self.scratch_block
        meta = self._meta(size)
        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream):  # compiles the Triton kernels and settles the allocator
            for _ in range(2):
                self._forward(size, meta)
        torch.cuda.current_stream(self.device).wait_stream(stream)
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool):
            out = self._forward(size, meta)
        log.info("captured a decode graph for batch %d", size)
        return graph, out

    def run(self, batch: list[StepInput]) -> torch.Tensor:
        """Float32 logits (len(batch), vocab) of a decode step that `fits`."""
        rows = len(batch)
        size = next(s for s in self.batch_sizes if s >= rows)
        if size not in self._graphs:
            try:
                self._graphs[size] = self._capture(size)
            except RuntimeError as exc:  # an op that cannot be captured (a driver, a collective)
                raise GraphCaptureError(f"capturing the decode step of batch {size} failed: {exc}") from exc
        graph, out = self._graphs[size]
        io, tables = self.pack(batch, size)
        self.io[:, :size].copy_(io)
        self.tables[:size, : tables.shape[1]].copy_(tables)
        graph.replay()
        self.replays += 1
        return out[:rows].clone()

    def pack(self, batch: list[StepInput], size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The step's rows as the graph of `size` reads them, on the host: io (3, size) = token
        ids, positions, cache slots; tables (size, width), width = the most blocks any row
        reads (columns past it keep older values, which no kernel reads). Rows past the
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

    @property
    def captured(self) -> tuple[int, ...]:
        return tuple(sorted(self._graphs))
