"""One rank's shard, read straight from the checkpoint: the whole model never sits in
one process's memory.

The model is built whole on the meta device (no memory), cut there (shard_model), and
only the shard is allocated. From a safetensors directory each rank then reads only its
rows or columns of each tensor (`safe_open(...).get_slice(name)[index]`); a GGUF tensor
is dequantized whole, one tensor at a time, and cut. The result equals
`shard_model(load the whole model, tp)`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..loader import ModelSource, fill, open_source, progress_bar
from ..models import build_model
from ..models.llama import LlamaForCausalLM
from .group import TensorParallelGroup
from .sharding import ShardSelector, check_tensor_parallel, shard_model


def load_shard(source: ModelSource | str | Path | None, tp: TensorParallelGroup, dtype: torch.dtype,
               device: str | torch.device, progress: bool = False, quant: str = "none") -> LlamaForCausalLM:
    """Rank tp.rank's shard of the model at `source` (a path, None for the embedded default,
    or an opened ModelSource), allocated on `device` in `dtype`; with `quant`, each of its
    linears quantized as its slice arrives (the per-row scales of a row-parallel layer are
    then its shard's)."""
    if not isinstance(source, ModelSource):
        source = open_source(source, with_tokenizer=False)
    config = source.config
    check_tensor_parallel(config, tp.world_size)
    with torch.device("meta"):
        model = build_model(config).to(dtype)
        select = ShardSelector(model, tp)  # the full shapes, before the cut
        model = shard_model(model, tp)
    weights = progress_bar(source.weights(select), source.count, f"loading rank {tp.rank}'s shard", progress)
    return fill(model, dtype, device, weights, quant=quant)
