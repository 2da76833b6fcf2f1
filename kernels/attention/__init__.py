"""Attention of flattened queries over paged K/V: the two ops the models call, and where each case goes.

`paged_attention` serves every case the engine runs: a fresh prefill, a prefill chunk on
top of cached tokens, and decode, optionally over a sliding window. `loop_attention` is a
Loop model's loop >= 2 layer: two such attentions (loop 1's pages, and the loop's own
within the window) mixed by a per-head gate. Where the sequences' queries and pages are
is `metadata.AttentionMetadata`.

    reference     the torch reference (`paged_attention_ref`); `loop` holds the Loop one
    decode        the Triton decode kernel: one query row per sequence, split-K
    cpu           the C decode kernel for the CPU (decode_cpu.c): the same, on the cores
    loop          the Loop layer's reference and its fused Triton decode kernel
    prefill       the Triton prefill kernels (plain and Loop), tiled over query rows
    prefill_plan  how a prefill is cut into tiles and key splits
    common        what the kernels share

Which path runs is `kernels.dispatch`'s choice (LOOPCODER_KERNELS): decode batches take a
decode kernel, prefill and prefill chunks a prefill kernel. Where Triton cannot run (CPU
installs have no triton), CPU decode steps take the C kernel where it is built, and
everything else the reference.
"""

from __future__ import annotations

import torch

from ..dispatch import kernel_mode, use_triton
from .cpu import cpu_decode_blocker, paged_decode_attention_cpu
from .common import DecodeLaunch, LayerCache, decode_blocker, decode_launch, decode_splits
from .decode import paged_decode_attention_triton
from .loop import loop_attention_ref, loop_decode_attention_triton, loop_gate
from .metadata import AttentionMetadata
from .prefill import loop_prefill_attention_triton, paged_prefill_attention_triton
from .prefill_plan import PrefillLaunch
from .reference import paged_attention_ref

__all__ = [
    "AttentionMetadata",
    "DecodeLaunch",
    "LayerCache",
    "PrefillLaunch",
    "decode_blocker",
    "decode_splits",
    "loop_attention",
    "loop_attention_ref",
    "loop_decode_attention_triton",
    "loop_gate",
    "loop_prefill_attention_triton",
    "paged_attention",
    "paged_attention_ref",
    "paged_decode_attention_triton",
    "paged_prefill_attention_triton",
]


def check_attention_shapes(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, window: int | None) -> None:
    if q.dim() != 3 or k_cache.dim() != 4 or k_cache.shape != v_cache.shape:
        raise ValueError(f"paged_attention shapes: q {tuple(q.shape)}, k_cache {tuple(k_cache.shape)}")
    if q.shape[2] != k_cache.shape[3] or q.shape[1] % k_cache.shape[2]:
        raise ValueError(f"head layout mismatch: q {tuple(q.shape)} vs cache {tuple(k_cache.shape)}")
    if window is not None and window < 1:
        raise ValueError(f"window must be >= 1, got {window}")


def is_decode(q: torch.Tensor, meta: AttentionMetadata) -> bool:
    """One query row per sequence (every scheduled sequence has at least one row)."""
    return q.shape[0] == meta.num_seqs


def paged_attention(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    meta: AttentionMetadata,
    scale: float,
    window: int | None = None,
) -> torch.Tensor:
    """q: (T, Hq, D); caches: (num_blocks, block_size, Hkv, D) -> (T, Hq, D).

    Where `kernels.dispatch` allows, decode batches take the Triton decode kernel, prefill
    and prefill chunks the Triton prefill kernel.
    """
    check_attention_shapes(q, k_cache, v_cache, window)
    if not use_triton("paged_attention", lambda: decode_blocker(q, k_cache, v_cache)):
        if kernel_mode() == "auto" and meta.decode_splits is None and cpu_decode_blocker(q, k_cache, v_cache, meta) is None:
            return paged_decode_attention_cpu(q, k_cache, v_cache, meta, scale, window)
        return paged_attention_ref(q, k_cache, v_cache, meta, scale, window)
    if is_decode(q, meta):
        return paged_decode_attention_triton(
            q, k_cache, v_cache, meta.block_tables, meta.positions, max(meta.context_lens), scale, window,
            launch=decode_launch(meta.decode_splits),
        )
    return paged_prefill_attention_triton(q, k_cache, v_cache, meta, scale, window)


def loop_attention(
    q: torch.Tensor,
    global_cache: LayerCache,
    local_cache: LayerCache,
    meta: AttentionMetadata,
    scale: float,
    window: int,
    gate_weight: torch.Tensor,
    gate_bias: torch.Tensor,
) -> torch.Tensor:
    """q: (T, Hq, D) rotated -> g * A + (1 - g) * B, (T, Hq, D).

    Where `kernels.dispatch` allows, decode batches take the fused Triton decode kernel,
    prefill and prefill chunks the fused Triton prefill kernel.
    """
    check_attention_shapes(q, *global_cache, None)
    check_attention_shapes(q, *local_cache, window)
    if not use_triton("loop_attention", lambda: decode_blocker(q, *global_cache, *local_cache)):
        return loop_attention_ref(q, global_cache, local_cache, meta, scale, window, gate_weight, gate_bias)
    if is_decode(q, meta):
        return loop_decode_attention_triton(
            q, global_cache, local_cache, meta.block_tables, meta.positions, max(meta.context_lens),
            scale, window, gate_weight, gate_bias, launch=decode_launch(meta.decode_splits),
        )
    return loop_prefill_attention_triton(q, global_cache, local_cache, meta, scale, window, gate_weight, gate_bias)
