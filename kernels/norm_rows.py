"""What the row norms (rmsnorm.py, layernorm.py) share: one Triton program per row, with
the residual add in front of the norm (x + residual rounded to the dtype, written out as
the next residual), the blocker that says when the kernel cannot take the rows, and the
launch. Each norm's own file holds its kernel, reference and dispatcher.
"""

from __future__ import annotations

from typing import Any

import torch

from .dispatch import triton_blocker

try:
    import triton
    import triton.language as tl
except ImportError:
    triton = None

TRITON_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
MAX_ROW = 65536  # a row is held in one block

if triton is not None:

    @triton.jit
    def load_row(x, residual, summed, stride_x, stride_r, stride_s, n, BLOCK: tl.constexpr, RESIDUAL: tl.constexpr):
        """This program's row: its values in float32 (after the residual add, whose rounded sum
        is stored to `summed`), its index, its columns and their mask."""
        row = tl.program_id(0)
        cols = tl.arange(0, BLOCK)
        ok = cols < n
        v = tl.load(x + row * stride_x + cols, mask=ok, other=0.0)
        if RESIDUAL:
            v = (v + tl.load(residual + row * stride_r + cols, mask=ok, other=0.0)).to(x.dtype.element_ty)
            tl.store(summed + row * stride_s + cols, v, mask=ok)
        return v.to(tl.float32), row, cols, ok


def row_norm_blocker(x: torch.Tensor, params: tuple[torch.Tensor, ...], residual: torch.Tensor | None) -> str | None:
    """Why a row norm's kernel cannot take x (T, hidden) with its per-column `params` (weight,
    and bias) and `residual`; None: it can."""
    tensors = (x, *params) if residual is None else (x, *params, residual)
    blocker = triton_blocker(*tensors)
    if blocker is not None:
        return blocker
    if x.dtype not in TRITON_DTYPES or any(t.dtype != x.dtype for t in tensors):
        return f"dtypes {', '.join(str(t.dtype) for t in tensors)}: the kernel takes one of fp32/bf16/fp16 for all"
    if (x.dim() != 2 or x.stride(-1) != 1 or not all(p.is_contiguous() for p in params)
            or (residual is not None and residual.stride(-1) != 1)):
        return "the kernel takes 2-D rows with a contiguous last dimension"
    if x.shape[-1] > MAX_ROW:
        return f"rows of {x.shape[-1]} elements: the kernel holds a row in one block of at most {MAX_ROW}"
    return None


def launch_row_norm(kernel: Any, x: torch.Tensor, params: tuple[torch.Tensor, ...], eps: float,
                    residual: torch.Tensor | None) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """kernel(out, x, residual, summed, *params, the four row strides, n, eps, BLOCK, RESIDUAL)
    over x's rows -> out, or (out, x + residual)."""
    rows, n = x.shape
    out = torch.empty_like(x)
    summed = torch.empty_like(x) if residual is not None else out
    block = triton.next_power_of_2(n)
    kernel[(rows,)](
        out, x, x if residual is None else residual, summed, *params,
        out.stride(0), x.stride(0), 0 if residual is None else residual.stride(0), summed.stride(0), n, eps,
        BLOCK=block, RESIDUAL=residual is not None, num_warps=min(16, max(1, block // 512)),
    )
    return out if residual is None else (out, summed)
