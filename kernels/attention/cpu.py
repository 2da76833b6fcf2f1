"""Decode attention on the CPU: the C kernel (decode_cpu.c), its blocker, and its call.

One query row per sequence over its paged K/V, the keys split into chunks of 256 shared
by the cores; float32 or bfloat16 caches. The torch reference (`reference.py`) is what it
is tested against, and what runs where it cannot (no compiler, prefill rows, the Loop
model's gated pair, LOOPCODER_KERNELS=torch).
"""

from __future__ import annotations

import torch

from ..cpu_ext import CpuExtension
from .metadata import AttentionMetadata

KERNEL_ABI_VERSION = 1
MAX_HEAD_DIM = 1024
MAX_REP = 64

_ext = CpuExtension("loopcoder.kernels.attention._decode_cpu", KERNEL_ABI_VERSION, "CPU decode attention")
_kernel = _ext.module
cpu_attention_status = _ext.status
supported_cpu_attention_isas = _ext.isas
set_cpu_attention_isa = _ext.set_isa


def cpu_decode_blocker(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, meta: AttentionMetadata) -> str | None:
    """Why the C kernel cannot take this step (None: it can)."""
    if _kernel is None:
        return _ext.missing
    if q.shape[0] != meta.num_seqs:
        return "not a decode step (more than one query row per sequence)"
    if {q.device.type, k_cache.device.type, v_cache.device.type} != {"cpu"}:
        return "its tensors are not on the CPU"
    if q.dtype not in (torch.float32, torch.bfloat16) or k_cache.dtype != q.dtype or v_cache.dtype != q.dtype:
        return f"query {q.dtype} and cache {k_cache.dtype}: it takes float32 or bfloat16, both the same"
    if not (k_cache.is_contiguous() and v_cache.is_contiguous()):
        return "the caches are not contiguous"
    if q.shape[2] > MAX_HEAD_DIM or q.shape[1] // k_cache.shape[2] > MAX_REP:
        return f"head size {q.shape[2]} or {q.shape[1] // k_cache.shape[2]} query heads a KV head is beyond it"
    return None


def paged_decode_attention_cpu(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, meta: AttentionMetadata,
                               scale: float, window: int | None = None) -> torch.Tensor:
    """q: (B, Hq, D), one row per sequence; caches: (num_blocks, block_size, Hkv, D) -> (B, Hq, D)."""
    q = q.contiguous()
    out = torch.empty_like(q)
    tables = meta.block_tables.contiguous()
    positions = meta.positions.contiguous()
    num_blocks, block_size, hkv, d = k_cache.shape
    # Each position must lie in its table and its blocks in the cache: a bad table is refused, never read.
    if tables.numel() and int(tables.max()) >= num_blocks:
        raise ValueError(f"a block table names block {int(tables.max())} of a cache of {num_blocks}")
    _kernel.decode(q.data_ptr(), k_cache.data_ptr(), v_cache.data_ptr(), out.data_ptr(), tables.data_ptr(),
                   positions.data_ptr(), q.shape[0], q.shape[1], hkv, d, block_size, tables.shape[1],
                   0 if window is None else window, scale, int(q.dtype == torch.bfloat16), torch.get_num_threads())
    return out
