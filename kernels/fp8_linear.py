"""FP8 (e4m3) linear layers: per-output-channel weight scales, per-token activation scales.

    W (N, K)  ->  Wq = round_e4m3(W / sw),  sw[n] = max|W[n, :]| / 448       (at load)
    x (M, K)  ->  xq = round_e4m3(x / sx),  sx[m] = max|x[m, :]| / 448       (every call)
    y = (xq @ Wq^T) * sx[:, None] * sw[None, :]   (+ bias), accumulated in float32, out in x's dtype

The weights stream at one byte per parameter, half of bf16, which is what a memory-bound
decode step pays for. Two fast paths compute that same product:

- one row (batch-1 decode): one Triton kernel per projection (`_fp8_gemv_kernel`). Each
  program finds the row's scale over all of K (a few KiB, read from L2), quantizes the
  activations on the fly, streams a BLOCK_N x K slab of weight codes once and multiplies
  with FMAs, and writes the scaled outputs: no quantization launch, no padding to a
  tensor-core tile. On an H100 it runs the 40B/7B projections 1.5-2.1x faster than bf16
  cuBLAS; with two rows or more FMAs cost more than _scaled_mm (benchmarks/fp8_gemv.py).
- more rows (batched decode, prefill): one Triton kernel quantizes the rows (`_quantize_rows_kernel`),
  then `torch._scaled_mm` multiplies with row-wise scales (cuBLASLt on Hopper; torch also
  implements it on CPU, so the path and its accuracy can be checked here).

The reference dequantizes both operands to float32 and multiplies: the three agree up to
the order of the float32 sums.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace

import torch

from .device import multiprocessors
from .dispatch import triton_blocker, use_triton

try:
    import triton
    import triton.language as tl
except ImportError:
    triton = None

E4M3 = torch.float8_e4m3fn
E4M3_MAX = 448.0
_MIN_SCALE = 1e-12  # an all-zero row keeps a finite scale
TRITON_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


@dataclass
class Fp8Weight:
    q: torch.Tensor  # (N, K) float8_e4m3fn
    scale: torch.Tensor  # (1, N) float32: row n of W is q[n] * scale[0, n]

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.q.shape)


@dataclass(frozen=True)
class GemvLaunch:
    """How `_fp8_gemv_kernel` tiles one product: BLOCK_N output columns per program, K in
    BLOCK_K steps, optionally cut into `split_k` ranges summed by float32 atomics."""

    block_n: int = 8
    block_k: int = 1024
    split_k: int = 1
    num_warps: int = 8
    num_stages: int = 3


def quantize_fp8(w: torch.Tensor) -> Fp8Weight:
    """W (N, K) in any float dtype -> e4m3 codes and per-row scales."""
    wf = w.detach().float()
    scale = (wf.abs().amax(dim=1) / E4M3_MAX).clamp(min=_MIN_SCALE)  # (N,)
    q = (wf / scale[:, None]).clamp(-E4M3_MAX, E4M3_MAX).to(E4M3)
    return Fp8Weight(q.contiguous(), scale[None, :].contiguous())


def quantize_rows_ref(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x (M, K) -> e4m3 codes (M, K) and per-row float32 scales (M, 1)."""
    xf = x.float()
    scale = (xf.abs().amax(dim=1, keepdim=True) / E4M3_MAX).clamp(min=_MIN_SCALE)
    return (xf / scale).clamp(-E4M3_MAX, E4M3_MAX).to(E4M3), scale


def dequantize_fp8(weight: Fp8Weight) -> torch.Tensor:
    return weight.q.float() * weight.scale[0][:, None]


def fp8_linear_ref(x: torch.Tensor, weight: Fp8Weight, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Both operands quantized as the fast paths quantize them, multiplied in float32."""
    flat = x.reshape(-1, x.shape[-1])
    xq, sx = quantize_rows_ref(flat)
    out = (xq.float() * sx) @ dequantize_fp8(weight).T
    if bias is not None:
        out = out + bias.float()
    return out.to(x.dtype).reshape(*x.shape[:-1], -1)


if triton is not None:

    @triton.jit
    def _row_scale(x, K, BLOCK_K: tl.constexpr):
        """max|x[:K]| / 448 of one row (float32, at least _MIN_SCALE)."""
        amax = tl.zeros((BLOCK_K,), tl.float32)
        for k0 in range(0, K, BLOCK_K):
            cols = k0 + tl.arange(0, BLOCK_K)
            amax = tl.maximum(amax, tl.abs(tl.load(x + cols, mask=cols < K, other=0.0).to(tl.float32)))
        return tl.maximum(tl.max(amax, 0) / 448.0, 1e-12)

    @triton.jit
    def _e4m3(v, scale):
        """round_e4m3(v / scale), as torch rounds it (true division, nearest-even, saturated)."""
        q = tl.clamp(tl.div_rn(v.to(tl.float32), scale), -448.0, 448.0)
        return q.to(tl.float8e4nv, fp_downcast_rounding="rtne")

    @triton.jit
    def _quantize_rows_kernel(x, codes, scales, K, stride_xm, stride_cm, BLOCK_K: tl.constexpr):
        row = tl.program_id(0)
        scale = _row_scale(x + row * stride_xm, K, BLOCK_K)
        tl.store(scales + row, scale)
        for k0 in range(0, K, BLOCK_K):
            cols = k0 + tl.arange(0, BLOCK_K)
            v = tl.load(x + row * stride_xm + cols, mask=cols < K, other=0.0)
            tl.store(codes + row * stride_cm + cols, _e4m3(v, scale), mask=cols < K)

    @triton.jit
    def _fp8_gemv_kernel(x, wq, wscale, bias, out, N, K, stride_wn,
                         HAS_BIAS: tl.constexpr, ATOMIC: tl.constexpr,
                         BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, SPLIT_K: tl.constexpr):
        pid_n, pid_k = tl.program_id(0), tl.program_id(1)
        cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        cols_ok = cols < N
        sx = _row_scale(x, K, BLOCK_K)
        span = tl.cdiv(tl.cdiv(K, BLOCK_K), SPLIT_K) * BLOCK_K
        k_lo = pid_k * span
        acc = tl.zeros((BLOCK_N,), tl.float32)
        for k0 in range(k_lo, tl.minimum(k_lo + span, K), BLOCK_K):
            ks = k0 + tl.arange(0, BLOCK_K)
            ks_ok = ks < K
            xq = _e4m3(tl.load(x + ks, mask=ks_ok, other=0.0), sx).to(tl.float32)
            w = tl.load(wq + cols[:, None] * stride_wn + ks[None, :], mask=cols_ok[:, None] & ks_ok[None, :], other=0.0)
            # FMAs and a row sum, not a tensor-core dot: a 16-row MMA tile converts the codes
            # through shared memory and wastes 15 of its rows (measured 1.5-3x slower).
            acc += tl.sum(w.to(tl.float32) * xq[None, :], 1)
        acc = acc * sx * tl.load(wscale + cols, mask=cols_ok, other=0.0)
        if HAS_BIAS:
            if pid_k == 0:
                acc += tl.load(bias + cols, mask=cols_ok, other=0.0).to(tl.float32)
        if ATOMIC:
            tl.atomic_add(out + cols, acc, mask=cols_ok)
        else:
            tl.store(out + cols, acc.to(out.dtype.element_ty), mask=cols_ok)


@functools.cache
def _cpu_rowwise_scaled_mm() -> bool:
    """Whether this torch's CPU _scaled_mm takes row-wise scales (2.13 does; 2.11 only per-tensor)."""
    codes = torch.ones(16, 16).to(E4M3)
    try:
        torch._scaled_mm(codes, codes.T, scale_a=torch.ones(16, 1), scale_b=torch.ones(1, 16), out_dtype=torch.bfloat16)
    except (RuntimeError, NotImplementedError):
        return False
    return True


def scaled_mm_blocker(x: torch.Tensor, weight: Fp8Weight) -> str | None:
    """Why torch._scaled_mm cannot take this product (None: it can)."""
    if not hasattr(torch, "_scaled_mm"):
        return "this torch has no _scaled_mm"
    if x.device.type == "cpu" and not _cpu_rowwise_scaled_mm():
        return "this torch's CPU _scaled_mm takes per-tensor scales only"
    if x.device != weight.q.device:
        return f"x is on {x.device}, the weight on {weight.q.device}"
    if x.device.type == "cuda" and torch.cuda.get_device_capability(x.device) < (8, 9):
        return "FP8 matmuls need compute capability 8.9 or newer (Ada, Hopper)"
    n, k = weight.shape
    if k % 16 or n % 16:
        return f"weight {n}x{k}: FP8 matmuls need both dimensions divisible by 16"
    return None


def fp8_triton_blocker(x: torch.Tensor, weight: Fp8Weight) -> str | None:
    """Why the Triton kernels cannot take x (None: they can)."""
    blocker = triton_blocker(x, weight.q)
    if blocker is not None:
        return blocker
    if x.dtype not in TRITON_DTYPES:
        return f"x is {x.dtype}; the kernels take fp32/bf16/fp16"
    if x.device.type == "cuda" and torch.cuda.get_device_capability(x.device) < (8, 9):
        return "e4m3 conversions need compute capability 8.9 or newer (Ada, Hopper)"
    return None


def gemv_launch(n: int, k: int, sms: int) -> GemvLaunch:
    """The tiling for an (n, k) weight on a GPU with `sms` multiprocessors: 8 warps on 8
    columns x 1024 inputs per step, or 16 x 512 for wide weights (gate/up, whole or cut over
    2 ranks), from `benchmarks/fp8_gemv.py`'s sweeps on an H100 and an H200 at the 40B/7B
    projections and their 2-rank shards; K is cut only where there are fewer than 4
    programs per multiprocessor."""
    launch = GemvLaunch(block_n=16, block_k=512) if n >= 16384 else GemvLaunch()
    programs = -(-n // launch.block_n)
    split_k = 1
    while programs * split_k < 4 * sms and k // (split_k * 2) >= 4 * launch.block_k:
        split_k *= 2
    return replace(launch, split_k=split_k)


def fp8_gemv(x: torch.Tensor, weight: Fp8Weight, bias: torch.Tensor | None = None,
             launch: GemvLaunch | None = None) -> torch.Tensor:
    """x (1, K) -> (1, N) in x's dtype: the one-kernel decode path."""
    if x.dim() != 2 or x.shape[0] != 1:
        raise ValueError(f"fp8_gemv takes one row, not x of shape {tuple(x.shape)}")
    n, k = weight.shape
    launch = launch or gemv_launch(n, k, multiprocessors(x.device) if x.device.type == "cuda" else 4)
    x = x if x.stride(-1) == 1 else x.contiguous()
    atomic = launch.split_k > 1
    out = (torch.zeros if atomic else torch.empty)(1, n, dtype=torch.float32 if atomic else x.dtype, device=x.device)
    _fp8_gemv_kernel[(triton.cdiv(n, launch.block_n), launch.split_k)](
        x, weight.q, weight.scale, bias if bias is not None else weight.scale, out, n, k, weight.q.stride(0),
        HAS_BIAS=bias is not None, ATOMIC=atomic,
        BLOCK_N=launch.block_n, BLOCK_K=launch.block_k, SPLIT_K=launch.split_k,
        num_warps=launch.num_warps, num_stages=launch.num_stages,
    )
    return out.to(x.dtype) if atomic else out


def _rows_blocker(x: torch.Tensor) -> str | None:
    blocker = triton_blocker(x)
    if blocker is None and x.dtype not in TRITON_DTYPES:
        return f"x is {x.dtype}; the kernel takes fp32/bf16/fp16"
    return blocker


def quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x (M, K) -> e4m3 codes (M, K) and per-row float32 scales (M, 1): one Triton kernel
    where it runs (one program per row), the reference's five torch ops elsewhere."""
    if x.dim() != 2 or not use_triton("quantize_rows", lambda: _rows_blocker(x)):
        return quantize_rows_ref(x)
    m, k = x.shape
    x = x if x.stride(-1) == 1 else x.contiguous()
    codes = torch.empty(m, k, dtype=E4M3, device=x.device)
    scales = torch.empty(m, 1, dtype=torch.float32, device=x.device)
    _quantize_rows_kernel[(m,)](x, codes, scales, k, x.stride(0), codes.stride(0), BLOCK_K=1024, num_warps=4)
    return codes, scales


def fp8_linear(x: torch.Tensor, weight: Fp8Weight, bias: torch.Tensor | None = None) -> torch.Tensor:
    """x (..., K) -> (..., N) in x's dtype.

    One row: the Triton GEMV (Triton on CUDA, see dispatch.py). More rows,
    or where the kernel cannot run: torch._scaled_mm on rows quantized by the Triton kernel
    (or torch ops). Where _scaled_mm cannot run either: the reference.
    """
    if x.shape[-1] != weight.shape[1]:
        raise ValueError(f"fp8_linear: x has {x.shape[-1]} inputs, the weight {weight.shape[1]}")
    flat = x.reshape(-1, x.shape[-1])
    if flat.shape[0] == 1 and use_triton("fp8_linear", lambda: fp8_triton_blocker(flat, weight)):
        return fp8_gemv(flat, weight, bias).reshape(*x.shape[:-1], -1)
    if scaled_mm_blocker(x, weight) is not None:
        return fp8_linear_ref(x, weight, bias)
    xq, sx = quantize_rows(flat)
    # Row-wise scaled products come out in bf16; the bias is added in x's dtype.
    out = torch._scaled_mm(xq, weight.q.T, scale_a=sx, scale_b=weight.scale, out_dtype=torch.bfloat16)
    out = out.to(x.dtype)
    if bias is not None:
        out = out + bias
    return out.reshape(*x.shape[:-1], -1)
