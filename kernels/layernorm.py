"""LayerNorm with a bias (StarCoder2), optionally fused with the residual add that precedes it.

    layer_norm(x, w, b, eps)               -> (x - mean(x)) / sqrt(var(x) + eps) * w + b
    layer_norm(x, w, b, eps, residual=r)   -> (layer_norm(x + r), x + r)

As the Hugging Face reference (`nn.LayerNorm`) computes it: the residual sum rounded to the
model's dtype, then torch's layer_norm, which normalises, scales and shifts in float32 and
rounds once. The torch reference is those two kernels; the Triton kernel is one pass per
row that reads x (and r) once and writes the outputs once.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .dispatch import use_triton
from .norm_rows import launch_row_norm, row_norm_blocker

try:
    import triton
    import triton.language as tl

    from .norm_rows import load_row
except ImportError:
    triton = None


def layer_norm_ref(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float,
                   residual: torch.Tensor | None = None) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    if residual is not None:
        x = x + residual
    normed = F.layer_norm(x, (x.shape[-1],), weight, bias, eps)
    return normed if residual is None else (normed, x)


if triton is not None:

    @triton.jit
    def _layer_norm_kernel(out, x, residual, summed, weight, bias, stride_out, stride_x, stride_r, stride_s, n, eps,
                           BLOCK: tl.constexpr, RESIDUAL: tl.constexpr):
        vf, row, cols, ok = load_row(x, residual, summed, stride_x, stride_r, stride_s, n, BLOCK, RESIDUAL)
        centred = tl.where(ok, vf - tl.sum(vf, 0) / n, 0.0)
        inv = tl.rsqrt(tl.sum(centred * centred, 0) / n + eps)
        w = tl.load(weight + cols, mask=ok, other=0.0).to(tl.float32)
        b = tl.load(bias + cols, mask=ok, other=0.0).to(tl.float32)
        tl.store(out + row * stride_out + cols, (centred * inv * w + b).to(out.dtype.element_ty), mask=ok)


def layer_norm_triton(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float,
                      residual: torch.Tensor | None = None) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    return launch_row_norm(_layer_norm_kernel, x, (weight, bias), eps, residual)


def layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float,
               residual: torch.Tensor | None = None) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """x (T, hidden), weight and bias (hidden,) -> the normed rows; with `residual` (T, hidden),
    (normed, x + residual)."""
    if x.shape[-1] != weight.shape[0] or bias.shape != weight.shape or (residual is not None and residual.shape != x.shape):
        raise ValueError(f"layer_norm shapes: x {tuple(x.shape)}, weight {tuple(weight.shape)}, bias {tuple(bias.shape)}"
                         + ("" if residual is None else f", residual {tuple(residual.shape)}"))
    if use_triton("layer_norm", lambda: row_norm_blocker(x, (weight, bias), residual)):
        return layer_norm_triton(x, weight, bias, eps, residual)
    return layer_norm_ref(x, weight, bias, eps, residual)
