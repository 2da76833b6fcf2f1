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

from .dispatch import use_triton
from .norm_rows import launch_row_norm, row_norm_blocker

try:
    import triton
    import triton.language as tl

    from .norm_rows import load_row
except ImportError:
    triton = None


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
        vf, row, cols, ok = load_row(x, residual, summed, stride_x, stride_r, stride_s, n, BLOCK, RESIDUAL)
        inv = tl.rsqrt(tl.sum(vf * vf, 0) / n + eps)
        normed = (vf * inv).to(x.dtype.element_ty).to(tl.float32)
        w = tl.load(weight + cols, mask=ok, other=0.0).to(tl.float32)
        tl.store(out + row * stride_out + cols, (w * normed).to(out.dtype.element_ty), mask=ok)


def rms_norm_triton(x: torch.Tensor, weight: torch.Tensor, eps: float,
                    residual: torch.Tensor | None = None) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    return launch_row_norm(_rms_norm_kernel, x, (weight,), eps, residual)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float,
             residual: torch.Tensor | None = None) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """x (T, hidden), weight (hidden,) -> the normed rows; with `residual` (T, hidden), (normed, x + residual)."""
    if x.shape[-1] != weight.shape[0] or (residual is not None and residual.shape != x.shape):
        raise ValueError(f"rms_norm shapes: x {tuple(x.shape)}, weight {tuple(weight.shape)}"
                         + ("" if residual is None else f", residual {tuple(residual.shape)}"))
    if use_triton("rms_norm", lambda: row_norm_blocker(x, (weight,), residual)):
        return rms_norm_triton(x, weight, eps, residual)
    return rms_norm_ref(x, weight, eps, residual)
