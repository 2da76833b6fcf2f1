"""FP8 (e4m3) linear layers: per-output-channel weight scales, per-token activation scales.

    W (N, K)  ->  Wq = round_e4m3(W / sw),  sw[n] = max|W[n, :]| / 448       (at load)
    x (M, K)  ->  xq = round_e4m3(x / sx),  sx[m] = max|x[m, :]| / 448       (every call)
    y = (xq @ Wq^T) * sx[:, None] * sw[None, :]   (+ bias), accumulated in float32, out in bf16

The weights stream at one byte per parameter, half of bf16, which is what a memory-bound
decode step pays for. The product runs in `torch._scaled_mm` with row-wise scales
(cuBLASLt on Hopper; torch also implements it on CPU, so the same path and its accuracy
can be checked here). The reference dequantizes both operands to float32 and multiplies.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

E4M3 = torch.float8_e4m3fn
E4M3_MAX = 448.0
_MIN_SCALE = 1e-12  # an all-zero row keeps a finite scale


@dataclass
class Fp8Weight:
    q: torch.Tensor  # (N, K) float8_e4m3fn
    scale: torch.Tensor  # (1, N) float32: row n of W is q[n] * scale[0, n]

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.q.shape)


def quantize_fp8(w: torch.Tensor) -> Fp8Weight:
    """W (N, K) in any float dtype -> e4m3 codes and per-row scales."""
    wf = w.detach().float()
    scale = (wf.abs().amax(dim=1) / E4M3_MAX).clamp(min=_MIN_SCALE)  # (N,)
    q = (wf / scale[:, None]).clamp(-E4M3_MAX, E4M3_MAX).to(E4M3)
    return Fp8Weight(q.contiguous(), scale[None, :].contiguous())


def quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x (M, K) -> e4m3 codes (M, K) and per-row float32 scales (M, 1)."""
    xf = x.float()
    scale = (xf.abs().amax(dim=1, keepdim=True) / E4M3_MAX).clamp(min=_MIN_SCALE)
    return (xf / scale).clamp(-E4M3_MAX, E4M3_MAX).to(E4M3), scale


def dequantize_fp8(weight: Fp8Weight) -> torch.Tensor:
    return weight.q.float() * weight.scale[0][:, None]


def fp8_linear_ref(x: torch.Tensor, weight: Fp8Weight, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Both operands quantized as the fast path quantizes them, multiplied in float32."""
    flat = x.reshape(-1, x.shape[-1])
    xq, sx = quantize_rows(flat)
    out = (xq.float() * sx) @ dequantize_fp8(weight).T
    if bias is not None:
        out = out + bias.float()
    return out.to(x.dtype).reshape(*x.shape[:-1], -1)


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


def fp8_linear(x: torch.Tensor, weight: Fp8Weight, bias: torch.Tensor | None = None) -> torch.Tensor:
    """x (..., K) -> (..., N) in x's dtype: torch._scaled_mm where it runs, else the reference."""
    if x.shape[-1] != weight.shape[1]:
        raise ValueError(f"fp8_linear: x has {x.shape[-1]} inputs, the weight {weight.shape[1]}")
    if scaled_mm_blocker(x, weight) is not None:
        return fp8_linear_ref(x, weight, bias)
    flat = x.reshape(-1, x.shape[-1])
    xq, sx = quantize_rows(flat)
    # Row-wise scaled products come out in bf16; the bias is added in x's dtype.
    out = torch._scaled_mm(xq, weight.q.T, scale_a=sx, scale_b=weight.scale, out_dtype=torch.bfloat16)
    out = out.to(x.dtype)
    if bias is not None:
        out = out + bias
    return out.reshape(*x.shape[:-1], -1)
