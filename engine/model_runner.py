"""Runs one forward step of the model over a batch of sequences on the paged cache."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch

from loopcoder.kernels.attention import AttentionMetadata
from loopcoder.kernels.dispatch import KernelUnavailableError

from .cuda_graphs import StepGraphs, GraphCaptureError
from .errors import KernelSettingError
from .kv_cache import KVCache
from .models.layers import has_gguf_layers, join_projections
from .models.llama import LlamaForCausalLM


@dataclass
class StepInput:
    """One sequence's part of a step: `token_ids` go at positions `start ..`."""

    block_table: list[int]
    start: int
    token_ids: list[int]


log = logging.getLogger(__name__)


@contextmanager
def kernel_errors() -> Iterator[None]:
    """A kernel the user forced (LOOPCODER_KERNELS) that cannot run reaches them as a
    LoopcoderError, with the kernels' message: every step of the model runs in here."""
    try:
        yield
    except KernelUnavailableError as exc:
        raise KernelSettingError(str(exc)) from exc


class ModelRunner:
    def __init__(self, model: LlamaForCausalLM, device: torch.device | str) -> None:
        self.model = model
        self.device = torch.device(device)
        if self.device.type == "cuda" or has_gguf_layers(model):
            # One matmul for q/k/v and one for gate/up: fewer launches and weight streams per
            # layer (on the CPU, fewer calls into the GGUF kernel).
            join_projections(model)
        if self.device.type == "cpu" and has_gguf_layers(model):
            log.info("CPU decode step: %s", model.prepare_cpu_decoder())
        self.graphs: StepGraphs | None = None  # set by use_cuda_graphs

    def use_cuda_graphs(self, kv: KVCache, scratch_block: int, max_context: int) -> None:
        """Replay captured graphs for the decode steps over `kv` that fit them (engine/cuda_graphs.py)."""
        self.graphs = StepGraphs(self.model, kv, scratch_block, max_context)

    @torch.inference_mode()
    def step(self, batch: list[StepInput], kv: KVCache, all_logits: bool = False) -> torch.Tensor:
        """Write the batch's K/V and return float32 logits: each sequence's last row (B, V),
        or every row (T, V) when `all_logits`."""
        with kernel_errors():
            return self._forward(batch, kv, all_logits)

    def _forward(self, batch: list[StepInput], kv: KVCache, all_logits: bool) -> torch.Tensor:
        graphs = self.graphs
        if graphs is not None and not all_logits and kv is graphs.kv and graphs.fits(batch):
            try:
                return graphs.run(batch)
            except GraphCaptureError as exc:
                log.warning("%s; decode steps run eagerly from now on", exc)
                self.graphs = None
        meta = AttentionMetadata.build(
            [s.block_table for s in batch],
            [s.start for s in batch],
            [len(s.token_ids) for s in batch],
            kv.block_size,
            self.device,
        )
        ids = torch.tensor([t for s in batch for t in s.token_ids], dtype=torch.int64, device=self.device)
        hidden = self.model(ids, meta, kv)  # (T, hidden)
        if not all_logits:
            last_rows = torch.tensor(meta.query_start[1:], device=self.device) - 1
            hidden = hidden[last_rows]  # (B, hidden)
        return self.model.compute_logits(hidden)

    def full_logits(self, token_ids: list[int], dtype: torch.dtype) -> torch.Tensor:
        """A full forward with no persistent cache: (T, V). K/V go to one scratch block."""
        scratch = KVCache(self.model.config, num_blocks=1, block_size=len(token_ids), dtype=dtype, device=self.device)
        return self.step([StepInput([0], 0, token_ids)], scratch, all_logits=True)
