"""RMSNorm, optionally fused with the residual add that precedes it.

    rms_norm(x, w, eps)               -> w * (x / sqrt(mean(x^2) + eps))
    rms_norm(x, w, eps, residual=r)   -> (w * norm(x + r), x + r)

As the Hugging Face reference computes it: the residual sum rounded to the model's dtype,
the normalisation in float32, rounded to the dtype, then the weight. The torch reference
is that sequence of ops (about eight kernels); the Triton kernel is one pass per row that
reads x (and r) once and writes the outputs once, so a decode step launches one kernel
per norm instead of eight.
"""

from __future__ import annotations

import torch

from .dispatch import triton_blocker, use_triton

try:
    import triton
    import triton.language as tl
except ImportError:
    triton = None

TRITON_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def rms_norm_ref(x: torch.Tensor, weight: torch.Tensor, eps: float,
                 residual: torch.Tensor | None = None) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    if residual is not None:
        x = x + residual
    xf = x.float()
    normed = weight * (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)
    return normed if residual is None else (normed, x)


if triton is not None:

    @triton.jit
    def _rms_norm_kernel(out, x, residual, summed, weight, stride_out, stride_x, stride_r, stride_s, n, eps,
                         BLOCK: tl.constexpr, RESIDUAL: tl.constexpr):
        row = tl.program_id(0)
        cols = tl.arange(0, BLOCK)
        ok = cols < n
        v = tl.load(x + row * stride_x + cols, mask=ok, other=0.0)
        if RESIDUAL:
            v = (v + tl.load(residual + row * stride_r + cols, mask=ok, other=0.0)).to(x.dtype.element_ty)
            tl.store(summed + row * stride_s + cols, v, mask=ok)
        vf = v.to(tl.float32)
        inv = tl.rsqrt(tl.sum(vf * vf, 0) / n + eps)
        normed = (vf * inv).to(x.dtype.element_ty).to(tl.float32)
        w = tl.load(weight + cols, mask=ok, other=0.0).to(tl.float32)
        tl.store(out + row * stride_out + cols, (w * normed).to(out.dtype.element_ty), mask=ok)


def rms_norm_blocker(x: torch.Tensor, weight: torch.Tensor, residual: torch.Tensor | None) -> str | None:
    tensors = (x, weight) if residual is None else (x, weight, residual)
    blocker = triton_blocker(*tensors)
    if blocker is not None:
        return blocker
    if x.dtype not in TRITON_DTYPES or weight.dtype != x.dtype or (residual is not None and residual.dtype != x.dtype):
        return f"dtypes x {x.dtype}, weight {weight.dtype}: the kernel takes one of fp32/bf16/fp16 for all"
    if x.dim() != 2 or x.stride(-1) != 1 or not weight.is_contiguous() or (residual is not None and residual.stride(-1) != 1):
        return "the kernel takes 2-D rows with a contiguous last dimension"
    if x.shape[-1] > 65536:
        return f"rows of {x.shape[-1]} elements: the kernel holds a row in one block of at most 65536"
    return None


def rms_norm_triton(x: torch.Tensor, weight: torch.Tensor, eps: float,
                    residual: torch.Tensor | None = None) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    rows, n = x.shape
    out = torch.empty_like(x)
    summed = torch.empty_like(x) if residual is not None else out
    block = triton.next_power_of_2(n)
    _rms_norm_kernel[(rows,)](
        out, x, x if residual is None else residual, summed, weight,
        out.stride(0), x.stride(0), 0 if residual is None else residual.stride(0), summed.stride(0), n, eps,
        BLOCK=block, RESIDUAL=residual is not None, num_warps=min(16, max(1, block // 512)),
    )
    return out if residual is None else (out, summed)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float,
             residual: torch.Tensor | None = None) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """x (T, hidden), weight (hidden,) -> the normed rows; with `residual` (T, hidden), (normed, x + residual)."""
    if x.shape[-1] != weight.shape[0] or (residual is not None and residual.shape != x.shape):
        raise ValueError(f"rms_norm shapes: x {tuple(x.shape)}, weight {tuple(weight.shape)}"
                         + ("" if residual is None else f", residual {tuple(residual.shape)}"))
    if use_triton("rms_norm", lambda: rms_norm_blocker(x, weight, residual)):
        return rms_norm_triton(x, weight, eps, residual)
    return rms_norm_ref(x, weight, eps, residual)
