"""What the attention kernels share: constants, input checks, the decode launch plan, and
the Triton functions that more than one kernel calls.

The decode kernels (`decode`, `loop`) walk a sequence's keys through its block table with
`attend_range` and cut long contexts into splits (flash-decoding), whose partials
`store_partial` writes and `merge_splits` combines; `split_plan` sizes the splits. The
Loop kernels (`loop`, `prefill`) share the per-head gate, `loop_gate_rows`, checked by
`check_loop_gate`. triton is an optional import, absent from CPU installs: without it
only the host-side pieces exist.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from ..device import multiprocessors
from ..dispatch import triton_blocker

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU installs: the reference serves every case
    triton = None

TRITON_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
LOG2E = 1.4426950408889634  # the kernels take exp2 of log2-scaled scores
LayerCache = tuple[torch.Tensor, torch.Tensor]  # (k_cache, v_cache), each (num_blocks, block_size, Hkv, D)


# ---------------------------------------------------------------------------------------
# Checks


def decode_blocker(q: torch.Tensor, *caches: torch.Tensor) -> str | None:
    """Why the Triton attention kernels cannot take these inputs (None: they can)."""
    blocker = triton_blocker(q, *caches)
    if blocker is not None:
        return blocker
    head_dim = q.shape[-1]
    if q.dtype not in TRITON_DTYPES or any(c.dtype != q.dtype for c in caches):
        return f"dtypes q {q.dtype}, cache {caches[0].dtype}: the kernel takes one of fp32/bf16/fp16 for both"
    if head_dim < 16 or head_dim > 256 or head_dim & (head_dim - 1):
        return f"head_dim {head_dim}: the kernel takes a power of two from 16 to 256"
    if q.stride(-1) != 1 or any(c.stride() != caches[0].stride() or c.stride(-1) != 1 for c in caches):
        return "q and the caches need a contiguous head_dim, and the caches one layout"
    return None


def check_decode_args(
    q: torch.Tensor, caches: tuple[torch.Tensor, ...], block_tables: torch.Tensor, positions: torch.Tensor
) -> None:
    """Raise ValueError unless the Triton decode kernels can take these inputs."""
    blocker = decode_blocker(q, *caches)
    if blocker is not None:
        raise ValueError(f"Triton decode attention: {blocker}")
    batch = q.shape[0]
    if block_tables.dim() != 2 or block_tables.shape[0] != batch or tuple(positions.shape) != (batch,):
        raise ValueError(
            f"Triton decode attention: block_tables {tuple(block_tables.shape)} and positions "
            f"{tuple(positions.shape)} need one row per query row ({batch})"
        )
    if block_tables.device != q.device or positions.device != q.device:
        raise ValueError("Triton decode attention: block_tables and positions must be on q's device")
    if block_tables.dtype != torch.int64 or positions.dtype != torch.int64 or block_tables.stride(1) != 1:
        raise ValueError("Triton decode attention: block_tables and positions must be int64, rows contiguous")


def check_loop_gate(q: torch.Tensor, gate_weight: torch.Tensor, gate_bias: torch.Tensor) -> None:
    """Raise ValueError unless the Triton kernels can read the gate of q's heads: weight (Hq, D),
    bias (Hq,), contiguous, on q's device."""
    num_heads, head_dim = q.shape[1:]
    if tuple(gate_weight.shape) != (num_heads, head_dim) or tuple(gate_bias.shape) != (num_heads,):
        raise ValueError(f"loop gate: weight {tuple(gate_weight.shape)}, bias {tuple(gate_bias.shape)} for q {tuple(q.shape)}")
    if not (gate_weight.is_contiguous() and gate_bias.is_contiguous()) or gate_weight.device != q.device:
        raise ValueError("loop gate: weight and bias must be contiguous and on q's device")


def output_for(q: torch.Tensor, out: torch.Tensor | None, what: str) -> torch.Tensor:
    """`out`, checked to take a kernel's answer for q (same shape and dtype, contiguous rows), or a new one."""
    if out is None:
        return torch.empty_like(q)
    if out.shape != q.shape or out.dtype != q.dtype or out.stride(-1) != 1:
        raise ValueError(f"{what}: out {tuple(out.shape)} {out.dtype} does not match q")
    return out


def dot_precision(dtype: torch.dtype) -> str:
    # float32 caches get exact float32 products; tf32 would cost ~3e-4 relative error.
    return "ieee" if dtype == torch.float32 else "tf32"


# ---------------------------------------------------------------------------------------
# The decode launch plan


@dataclass(frozen=True)
class DecodeLaunch:
    """How a decode kernel is cut. The defaults come from benchmarks/attention_kernels.py."""

    num_splits: int | None = None  # None: decode_splits() decides
    block_n: int = 64  # keys per step of the inner loop
    num_warps: int = 4
    num_stages: int = 2


@functools.cache
def decode_launch(num_splits: int | None) -> DecodeLaunch:
    """The default launch, with a fixed split count where the step sets one (a CUDA graph's)."""
    return DecodeLaunch(num_splits=num_splits)


def rep_tile(n_rep: int) -> int:
    """Rows of the query tile: the n_rep query heads of a KV head, padded for tl.dot."""
    return max(16, triton.next_power_of_2(n_rep))


def decode_splits(num_programs: int, span: int, device: torch.device, block_n: int) -> int:
    """Splits per (sequence, KV head): about four programs per multiprocessor in all, a power
    of two, and at least one block_n tile of keys per split (chosen from the sweep in
    benchmarks/attention_kernels.py: on an H200 this was the best count at batch 1, 8 and 32)."""
    if device.type != "cuda":
        return 1
    wanted = max(1, 4 * multiprocessors(device) // num_programs)
    wanted = 1 << (wanted.bit_length() - 1)  # the largest power of two <= wanted
    return max(1, min(wanted, span // block_n))


def split_plan(batch: int, num_kv_heads: int, span: int, device: torch.device, launch: DecodeLaunch) -> int:
    """Splits per (sequence, KV head); span: most keys any query sees. Each sequence cuts its
    own keys into that many chunks in the kernel, so a fixed count (a CUDA graph's) serves
    every length."""
    return launch.num_splits or decode_splits(batch * num_kv_heads, span, device, launch.block_n)


# ---------------------------------------------------------------------------------------
# Triton


if triton is not None:

    @triton.jit
    def attend_range(
        q, k_cache, v_cache, table, head_offset, lo, hi,
        stride_block, stride_token, qk_scale,
        BLOCK_SIZE: tl.constexpr, BLOCK_N: tl.constexpr, REP: tl.constexpr, D: tl.constexpr,
        PRECISION: tl.constexpr,
    ):
        """Online softmax of the (REP, D) tile q over keys lo .. hi-1 of one sequence and KV head.

        table: the sequence's block-table row; head_offset: the KV head's offset in a token's
        row. Returns acc (REP, D) unnormalised, m (REP,) the running max of the log2-scaled
        scores and l (REP,) the sum of their exp2; lo >= hi gives acc 0, m -inf, l 0.
        """
        offs_n = tl.arange(0, BLOCK_N)
        offs_d = tl.arange(0, D)
        m = tl.full([REP], float("-inf"), tl.float32)
        l = tl.zeros([REP], tl.float32)
        acc = tl.zeros([REP, D], tl.float32)
        for start in range(lo, hi, BLOCK_N):
            pos = start + offs_n  # (BLOCK_N,)
            valid = pos < hi
            block = tl.load(table + pos // BLOCK_SIZE, mask=valid, other=0)  # int64 block ids
            rows = block * stride_block + (pos % BLOCK_SIZE) * stride_token + head_offset  # (BLOCK_N,)
            kv_ptrs = rows[:, None] + offs_d[None, :]  # (BLOCK_N, D)
            k = tl.load(k_cache + kv_ptrs, mask=valid[:, None], other=0.0)
            s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale  # (REP, BLOCK_N)
            s = tl.where(valid[None, :], s, float("-inf"))
            m_new = tl.maximum(m, tl.max(s, 1))
            alpha = tl.exp2(m - m_new)
            p = tl.exp2(s - m_new[:, None])
            l = l * alpha + tl.sum(p, 1)
            v = tl.load(v_cache + kv_ptrs, mask=valid[:, None], other=0.0)
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
            m = m_new
        return acc, m, l

    @triton.jit
    def split_chunk(span, num_splits, BLOCK_N: tl.constexpr):
        """Keys per split of one sequence: its own span cut in num_splits, rounded up to
        whole BLOCK_N tiles (trailing splits of a short sequence get none)."""
        return tl.cdiv(tl.cdiv(span, num_splits), BLOCK_N) * BLOCK_N

    @triton.jit
    def store_partial(part_acc, part_ml, acc, m, l, heads, rows_ok, seq, split, num_heads, num_splits, D: tl.constexpr):
        """Split `split`'s (acc, m, l) of the given heads into part_acc (B, Hq, S, D), part_ml (B, Hq, S, 2)."""
        slot = (seq * num_heads + heads) * num_splits + split  # (REP,)
        tl.store(part_acc + slot[:, None] * D + tl.arange(0, D)[None, :], acc, mask=rows_ok[:, None])
        tl.store(part_ml + slot * 2, m, mask=rows_ok)
        tl.store(part_ml + slot * 2 + 1, l, mask=rows_ok)

    @triton.jit
    def merge_splits(part_acc, part_ml, row, num_splits, SPLITS: tl.constexpr, D: tl.constexpr):
        """The normalised (D,) float32 output of one (sequence, head) row = seq * Hq + head."""
        split = tl.arange(0, SPLITS)
        used = split < num_splits
        slot = row * num_splits + split
        m = tl.load(part_ml + slot * 2, mask=used, other=float("-inf"))
        l = tl.load(part_ml + slot * 2 + 1, mask=used, other=0.0)
        weight = tl.where(m > float("-inf"), tl.exp2(m - tl.max(m, 0)), 0.0)  # empty splits weigh 0
        acc = tl.load(part_acc + slot[:, None] * D + tl.arange(0, D)[None, :], mask=used[:, None], other=0.0)
        return tl.sum(acc * weight[:, None], 0) / tl.sum(l * weight, 0)

    @triton.jit
    def loop_gate_rows(q, gate_w, gate_b, heads, rows_ok, offs_d, D: tl.constexpr):
        """sigmoid(q . w[head] + b[head]) in float32 for the (REP, D) tile q of the given heads."""
        w = tl.load(gate_w + heads[:, None] * D + offs_d[None, :], mask=rows_ok[:, None], other=0.0)
        bias = tl.load(gate_b + heads, mask=rows_ok, other=0.0)
        return tl.sigmoid(tl.sum(q.to(tl.float32) * w.to(tl.float32), 1) + bias.to(tl.float32))
