"""GGUF blocks on the GPU: y = x @ W^T + bias with W in a GGUF file's own blocks (Q4_0,
Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K), dequantized in registers inside the K loop.

Every type is read as sub-blocks of 32 consecutive inputs (`_sub_block`): a whole block
of the 32-element types, an eighth of a K-quant's super-block of 256. Byte offsets in a
block, as `gguf_blocks._dequantize_blocks` reads them (d, m: float16; w = weight):

    Q4_0  d@0 qs@2[16]              w[l] = d * (nibble(l) - 8)      nibble(l): qs[l % 16], low half first
    Q4_1  d@0 m@2 qs@4[16]          w[l] = d * nibble(l) + m
    Q5_0  d@0 qh@2[4] qs@6[16]      w[l] = d * (nibble(l) | bit l of qh << 4) - 16 d
    Q5_1  d@0 m@2 qh@4[4] qs@8[16]  w[l] = d * (nibble(l) | bit l of qh << 4) + m
    Q8_0  d@0 qs@2[32] int8         w[l] = d * qs[l]
    Q4_K  d@0 dmin@2 scales@4[12] qs@16[128]            sub-block j: w = d * sc[j] * code - dmin * mn[j],
    Q5_K  d@0 dmin@2 scales@4[12] qh@16[32] qs@48[128]  sc, mn 6-bit (get_scale_min_k4); code = qs[32 (j // 2) + l]
                                                        >> 4 (j % 2), | bit j of qh[l] << 4 for Q5_K
    Q6_K  ql@0[128] qh@128[64] scales@192[16] int8 d@208
          sub-block j = 4h + i: code = (ql[64h + 32 (i % 2) + l] >> 4 (i // 2)) & 15 | ((qh[32h + l] >> 2i) & 3) << 4,
          w = d * scales[2j + l // 16] * (code - 32)

Blocks are loaded byte by byte (uint8) and float16 fields assembled from two bytes: a
block's fields sit at any alignment (18-byte Q4_0 blocks).

Three paths (`gguf_linear_triton` and `matmul_launch` pick by the rows M):

- one row (decode): a GEMV. Each program streams BLOCK_N weight rows once, multiplies
  with FMAs into a partial sum per lane and reduces it once at the end (a 16-row
  tensor-core tile would waste 15 rows and convert every weight tile through shared
  memory). K is cut over split_k programs, summed by float32 atomics, where the column
  tiles alone would leave multiprocessors idle.
- 2 to CUBLAS_MIN_ROWS - 1 rows (batched decode, short extends): tiles of BLOCK_M rows
  (16, 32 or 64) and tl.dot; every row of a tile shares each dequantized weight tile.
- from CUBLAS_MIN_ROWS rows (prefill chunks): `gguf_dequantize_triton` writes the weight
  once in x's dtype into a scratch tensor and cuBLAS multiplies.

Every launch is fixed by the shapes alone (no host sync, the same allocations on each
call), so a CUDA graph captures it. The torch reference is `gguf_blocks.gguf_linear_ref`;
the dispatcher is `gguf_linear.gguf_linear`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from .device import multiprocessors
from .dispatch import triton_blocker
from .gguf_blocks import GGUFWeight

try:
    import triton
    import triton.language as tl
except ImportError:
    triton = None

TRITON_DTYPES = (torch.bfloat16, torch.float16, torch.float32)
SUB_BLOCK = 32  # inputs per `_sub_block`
# From this many rows, dequantize once and let cuBLAS multiply. A first guess between the
# benchmark's 64 and 512 rows; benchmarks/gguf_gpu.py times both paths at each.
CUBLAS_MIN_ROWS = 128


@dataclass(frozen=True)
class GGUFLaunch:
    """How `_gguf_matmul_kernel` tiles one product: BLOCK_M rows x BLOCK_N outputs per
    program, K in steps of `sub_blocks` sub-blocks of 32 (unrolled), cut into `split_k`
    ranges summed by float32 atomics; tl.dot, or FMAs for the GEMV (block_m 1)."""

    block_m: int = 1
    block_n: int = 64
    sub_blocks: int = 2
    split_k: int = 1
    use_dot: bool = False
    num_warps: int = 4
    num_stages: int = 2


if triton is not None:

    @triton.jit
    def _half(p, mask):
        """The float16 at bytes p, p + 1 (any alignment), as float32."""
        lo = tl.load(p, mask=mask, other=0).to(tl.uint16)
        hi = tl.load(p + 1, mask=mask, other=0).to(tl.uint16)
        return (lo | (hi << 8)).to(tl.float16, bitcast=True).to(tl.float32)

    @triton.jit
    def _byte(p, mask):
        return tl.load(p, mask=mask, other=0).to(tl.int32)

    @triton.jit
    def _k4_scale_min(sb, ok, j):
        """Q4_K / Q5_K: sub-block j's 6-bit scale and min (BLOCK_N,), from bytes 4..15 of the
        super-blocks at `sb` (get_scale_min_k4)."""
        a = _byte(sb + 4 + j, ok)
        b = _byte(sb + 8 + j, ok)
        c = _byte(sb + j, ok)  # byte j - 4 of the scales: read only for j >= 4
        low = j < 4
        scale = tl.where(low, a & 63, (b & 0xF) | ((c >> 6) << 4))
        least = tl.where(low, b & 63, (b >> 4) | ((a >> 6) << 4))
        return scale.to(tl.float32), least.to(tl.float32)

    @triton.jit
    def _sub_block(blocks, rows, rows_ok, kb, TYPE: tl.constexpr, BLOCK_BYTES: tl.constexpr):
        """(BLOCK_N, 32) float32: inputs [32 kb, 32 kb + 32) of the weight rows starting at
        byte offsets `rows` (BLOCK_N,) of `blocks`; zero where not rows_ok."""
        lane = tl.arange(0, 32)
        ok = rows_ok[:, None]
        if TYPE >= 12:  # K-quants: sub-block j of a super-block of 256
            sb = blocks + rows + (kb // 8) * BLOCK_BYTES  # (BLOCK_N,)
            j = kb % 8
            at = sb[:, None]
            if TYPE == 14:  # Q6_K
                h = j // 4
                i = j % 4
                low = (_byte(at + h * 64 + (i % 2) * 32 + lane[None, :], ok) >> ((i // 2) * 4)) & 0xF
                high = (_byte(at + 128 + h * 32 + lane[None, :], ok) >> (2 * i)) & 3
                scale = tl.load(at + 192 + 2 * j + lane[None, :] // 16, mask=ok, other=0).to(tl.int8, bitcast=True)
                d = _half(sb + 208, rows_ok)
                return (d[:, None] * scale.to(tl.float32)) * ((low | (high << 4)) - 32).to(tl.float32)
            d = _half(sb, rows_ok)
            dmin = _half(sb + 2, rows_ok)
            scale, least = _k4_scale_min(sb, rows_ok, j)
            qs_at = 16 if TYPE == 12 else 48
            code = (_byte(at + qs_at + (j // 2) * 32 + lane[None, :], ok) >> ((j % 2) * 4)) & 0xF
            if TYPE == 13:  # Q5_K: bit j of qh[l]
                code = code | (((_byte(at + 16 + lane[None, :], ok) >> j) & 1) << 4)
            return (d * scale)[:, None] * code.to(tl.float32) - (dmin * least)[:, None]
        b = blocks + rows + kb * BLOCK_BYTES  # (BLOCK_N,): one block of 32
        at = b[:, None]
        d = _half(b, rows_ok)
        if TYPE == 8:  # Q8_0
            q = tl.load(at + 2 + lane[None, :], mask=ok, other=0).to(tl.int8, bitcast=True)
            return d[:, None] * q.to(tl.float32)
        QS: tl.constexpr = 2 if TYPE == 2 else 4 if TYPE == 3 else 6 if TYPE == 6 else 8
        code = (_byte(at + QS + lane[None, :] % 16, ok) >> ((lane[None, :] // 16) * 4)) & 0xF
        if TYPE == 6 or TYPE == 7:  # Q5_0, Q5_1: bit l of the 32-bit qh before qs
            code = code | (((_byte(at + QS - 4 + lane[None, :] // 8, ok) >> (lane[None, :] % 8)) & 1) << 4)
        if TYPE == 2:
            return d[:, None] * (code - 8).to(tl.float32)
        if TYPE == 6:
            return d[:, None] * (code - 16).to(tl.float32)
        return d[:, None] * code.to(tl.float32) + _half(b + 2, rows_ok)[:, None]  # Q4_1, Q5_1

    @triton.jit
    def _gguf_matmul_kernel(x, blocks, bias, out, M, N, K, stride_xm, stride_om, row_bytes, split_k,
                            TYPE: tl.constexpr, BLOCK_BYTES: tl.constexpr, HAS_BIAS: tl.constexpr,
                            ATOMIC: tl.constexpr, USE_DOT: tl.constexpr, BLOCK_M: tl.constexpr,
                            BLOCK_N: tl.constexpr, SUB_BLOCKS: tl.constexpr):
        pid_m, pid_n, pid_k = tl.program_id(0), tl.program_id(1), tl.program_id(2)
        rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        rows_ok = rows < M
        cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        cols_ok = cols < N
        w_rows = cols.to(tl.int64) * row_bytes  # (BLOCK_N,) byte offset of each weight row
        x_rows = x + rows[:, None] * stride_xm  # (BLOCK_M, 1)
        lane = tl.arange(0, 32)
        subs = K // 32
        span = tl.cdiv(tl.cdiv(subs, split_k), SUB_BLOCKS) * SUB_BLOCKS  # sub-blocks per split
        lo = pid_k * span
        hi = tl.minimum(lo + span, subs)
        if USE_DOT:
            acc = tl.zeros((BLOCK_M, BLOCK_N), tl.float32)
        else:  # one row (BLOCK_M == 1): a partial sum per lane, reduced once after the loop
            acc = tl.zeros((BLOCK_N, 32), tl.float32)
        for kb0 in range(lo, hi, SUB_BLOCKS):
            for g in tl.static_range(SUB_BLOCKS):
                kb = kb0 + g
                # Each mask is one comparison: Triton's interpreter turns (bool tensor & bool scalar) into ints.
                live = kb < hi
                w = _sub_block(blocks, w_rows, cols < tl.where(live, N, 0), kb, TYPE, BLOCK_BYTES)  # (BLOCK_N, 32)
                if USE_DOT:
                    x_ok = rows < tl.where(live, M, 0)
                    xs = tl.load(x_rows + kb * 32 + lane[None, :], mask=x_ok[:, None], other=0.0)  # (BLOCK_M, 32)
                    acc += tl.dot(xs, tl.trans(w.to(xs.dtype)))  # (BLOCK_M, 32) x (32, BLOCK_N)
                else:
                    xs = tl.load(x + pid_m * stride_xm + kb * 32 + lane, mask=lane < tl.where(live, 32, 0), other=0.0)
                    acc += w * xs.to(tl.float32)[None, :]
        if not USE_DOT:
            acc = tl.sum(acc, 1)[None, :]  # (1, BLOCK_N)
        if HAS_BIAS:
            if pid_k == 0:
                acc += tl.load(bias + cols, mask=cols_ok, other=0.0).to(tl.float32)[None, :]
        ptrs = out + rows[:, None] * stride_om + cols[None, :]
        mask = rows_ok[:, None] & cols_ok[None, :]
        if ATOMIC:
            tl.atomic_add(ptrs, acc, mask=mask)
        else:
            tl.store(ptrs, acc.to(out.dtype.element_ty), mask=mask)

    @triton.jit
    def _gguf_dequantize_kernel(blocks, out, N, K, row_bytes, stride_on, TYPE: tl.constexpr,
                                BLOCK_BYTES: tl.constexpr, BLOCK_N: tl.constexpr, SUB_BLOCKS: tl.constexpr):
        pid_n, pid_k = tl.program_id(0), tl.program_id(1)
        cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        w_rows = cols.to(tl.int64) * row_bytes
        out_rows = out + cols.to(tl.int64)[:, None] * stride_on  # (BLOCK_N, 1)
        lane = tl.arange(0, 32)
        for g in tl.static_range(SUB_BLOCKS):
            kb = pid_k * SUB_BLOCKS + g
            ok = cols < tl.where(kb < K // 32, N, 0)
            w = _sub_block(blocks, w_rows, ok, kb, TYPE, BLOCK_BYTES)
            tl.store(out_rows + kb * 32 + lane[None, :], w.to(out.dtype.element_ty), mask=ok[:, None])


def gguf_triton_blocker(x: torch.Tensor, weight: GGUFWeight, bias: torch.Tensor | None = None) -> str | None:
    """Why the Triton kernels cannot take this product (None: they can)."""
    tensors = (x, weight.blocks) if bias is None else (x, weight.blocks, bias)
    blocker = triton_blocker(*tensors)
    if blocker is not None:
        return blocker
    if x.dtype not in TRITON_DTYPES:
        return f"x is {x.dtype}; the kernels take bf16/fp16/fp32 activations"
    if bias is not None and bias.dtype != x.dtype:
        return f"the bias is {bias.dtype}, x {x.dtype}"
    return None


def matmul_launch(m: int, n: int, k: int, sms: int) -> GGUFLaunch:
    """The tiling for M rows of a (n, k) weight on a GPU with `sms` multiprocessors: the
    GEMV for one row, tl.dot tiles of 16, 32 or 64 rows above; K is cut (in powers of two,
    each range at least four steps) until there are 4 programs per multiprocessor. A
    starting point, checked by the registers and spills of the compiled kernels only:
    `benchmarks/gguf_gpu.py --sweep` times it against other tilings."""
    if m == 1:
        launch = GGUFLaunch(block_m=1, block_n=64, sub_blocks=2)
    else:
        launch = GGUFLaunch(block_m=16 if m <= 16 else 32 if m <= 32 else 64, sub_blocks=2, use_dot=True)
    programs = -(-m // launch.block_m) * -(-n // launch.block_n)
    subs, split_k = k // SUB_BLOCK, 1
    while programs * split_k < 4 * sms and subs // (split_k * 2) >= 4 * launch.sub_blocks:
        split_k *= 2
    return replace(launch, split_k=split_k)


def gguf_matmul(x: torch.Tensor, weight: GGUFWeight, bias: torch.Tensor | None = None,
                launch: GGUFLaunch | None = None) -> torch.Tensor:
    """x (M, K) -> (M, N) in x's dtype, the blocks dequantized inside the K loop."""
    m, k = x.shape
    n = weight.shape[0]
    if k != weight.in_features:
        raise ValueError(f"gguf_matmul: x has {k} inputs, the weight {weight.in_features}")
    launch = launch or matmul_launch(m, n, k, multiprocessors(x.device) if x.device.type == "cuda" else 4)
    if not launch.use_dot and launch.block_m != 1:
        raise ValueError(f"the FMA launch takes one row per program (block_m 1), not {launch}")
    x = x if x.stride(-1) == 1 else x.contiguous()
    atomic = launch.split_k > 1
    out = torch.zeros(m, n, dtype=torch.float32, device=x.device) if atomic else x.new_empty(m, n)
    grid = (triton.cdiv(m, launch.block_m), triton.cdiv(n, launch.block_n), launch.split_k)
    _gguf_matmul_kernel[grid](
        x, weight.blocks, out if bias is None else bias, out, m, n, k, x.stride(0), out.stride(0),
        weight.blocks.stride(0), launch.split_k, TYPE=weight.type.id, BLOCK_BYTES=weight.type.block_bytes,
        HAS_BIAS=bias is not None, ATOMIC=atomic, USE_DOT=launch.use_dot, BLOCK_M=launch.block_m,
        BLOCK_N=launch.block_n, SUB_BLOCKS=launch.sub_blocks, num_warps=launch.num_warps, num_stages=launch.num_stages,
    )
    return out.to(x.dtype) if atomic else out


def gguf_dequantize_triton(weight: GGUFWeight, dtype: torch.dtype, block_n: int = 64,
                           sub_blocks: int = 4) -> torch.Tensor:
    """(N, K) in `dtype`: what the blocks hold, written by one Triton kernel."""
    n, k = weight.shape
    out = torch.empty(n, k, dtype=dtype, device=weight.blocks.device)
    grid = (triton.cdiv(n, block_n), triton.cdiv(k // SUB_BLOCK, sub_blocks))
    _gguf_dequantize_kernel[grid](
        weight.blocks, out, n, k, weight.blocks.stride(0), out.stride(0), TYPE=weight.type.id,
        BLOCK_BYTES=weight.type.block_bytes, BLOCK_N=block_n, SUB_BLOCKS=sub_blocks, num_warps=4,
    )
    return out


def gguf_linear_triton(x: torch.Tensor, weight: GGUFWeight, bias: torch.Tensor | None = None) -> torch.Tensor:
    """x (..., K) -> (..., N): the fused kernel below CUBLAS_MIN_ROWS rows, else the weight
    dequantized once into a scratch tensor of x's dtype and F.linear (cuBLAS). float32 rows
    take the fused kernel for the GEMV only: tl.dot would round them to tf32."""
    n, k = weight.shape
    flat = x.reshape(-1, k)  # (M, K)
    rows = flat.shape[0]
    if rows == 0:
        return x.new_empty(*x.shape[:-1], n)
    if rows >= CUBLAS_MIN_ROWS or (rows > 1 and x.dtype == torch.float32):
        out = F.linear(flat, gguf_dequantize_triton(weight, x.dtype), bias)
    else:
        out = gguf_matmul(flat, weight, bias)
    return out.reshape(*x.shape[:-1], n)
