"""SwiGLU's activation: silu(gate) * up, elementwise.

The reference is two torch kernels (silu, then the product, each rounding to the model's
dtype); the Triton kernel is one pass that rounds the same way. `gate` and `up` may be
column views of one (T, 2I) projection (strided rows).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .dispatch import triton_blocker, use_triton

try:
    import triton
    import triton.language as tl
except ImportError:
    triton = None

TRITON_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
BLOCK = 1024


def silu_mul_ref(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    return F.silu(gate) * up


if triton is not None:

    @triton.jit
    def _silu_mul_kernel(out, gate, up, stride_out, stride_gate, stride_up, n, BLOCK: tl.constexpr):
        row, block = tl.program_id(0), tl.program_id(1)
        cols = block * BLOCK + tl.arange(0, BLOCK)
        ok = cols < n
        g = tl.load(gate + row * stride_gate + cols, mask=ok, other=0.0).to(tl.float32)
        u = tl.load(up + row * stride_up + cols, mask=ok, other=0.0)
        act = (g * tl.sigmoid(g)).to(u.dtype).to(tl.float32)
        tl.store(out + row * stride_out + cols, (act * u.to(tl.float32)).to(out.dtype.element_ty), mask=ok)


def silu_mul_blocker(gate: torch.Tensor, up: torch.Tensor) -> str | None:
    blocker = triton_blocker(gate, up)
    if blocker is not None:
        return blocker
    if gate.dtype not in TRITON_DTYPES or up.dtype != gate.dtype:
        return f"dtypes gate {gate.dtype}, up {up.dtype}: the kernel takes one of fp32/bf16/fp16 for both"
    if gate.dim() != 2 or gate.stride(-1) != 1 or up.stride(-1) != 1:
        return "the kernel takes 2-D rows with a contiguous last dimension"
    return None


def silu_mul(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """gate, up (T, I) -> silu(gate) * up (T, I), contiguous."""
    if gate.shape != up.shape:
        raise ValueError(f"silu_mul shapes: gate {tuple(gate.shape)}, up {tuple(up.shape)}")
    if not use_triton("silu_mul", lambda: silu_mul_blocker(gate, up)):
        return silu_mul_ref(gate, up)
    rows, n = gate.shape
    out = torch.empty(rows, n, dtype=gate.dtype, device=gate.device)
    _silu_mul_kernel[(rows, triton.cdiv(n, BLOCK))](
        out, gate, up, out.stride(0), gate.stride(0), up.stride(0), n, BLOCK=BLOCK, num_warps=4,
    )
    return out
