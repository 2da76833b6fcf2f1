"""Weight-only quantized linear layers: int8 per output channel, int4 in groups along the input.

Batch-1 decode streams every weight once per token, so its speed is set by weight bytes:
int8 halves bf16's, int4 quarters it. Activations stay bf16 (or fp32).

Formats (N outputs, K inputs):

    int8: w[n, k] = q[n, k] * scale[n]                          q int8, scale (N,)
    int4: w[n, k] = (q[n, k] - 8) * scale[g, n] + zero[g, n]    q in 0..15, g = k // group
          scale_zero: (K // group, N, 2), the layout torch's CPU int4 kernel takes

A GGUF Q4_1 block (w = d * q + m over 32 inputs) is exactly an int4 group with
scale = d, zero = m + 8d, so quantizing Q4_1-dequantized weights with group 32 finds
the file's own codes again.

Fast path: torch's packed CPU kernels (`_weight_int8pack_mm`, `_weight_int4pack_mm_for_cpu`)
for bf16 activations on the CPU. Everything else takes the reference: dequantize, then matmul.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

INT4_GROUP = 32
INT4_PACKED_MAX_ROWS = 256


@dataclass
class Int8Weight:
    q: torch.Tensor  # (N, K) int8
    scale: torch.Tensor  # (N,) activation dtype


@dataclass
class Int4Weight:
    nibbles: torch.Tensor  # (N, K // 2) uint8: code of input 2j in the low nibble, 2j+1 in the high
    scale_zero: torch.Tensor  # (K // group, N, 2) activation dtype
    packed: torch.Tensor | None  # torch's CPU int4 layout, or None where that op is missing
    group: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.nibbles.shape[0], 2 * self.nibbles.shape[1]

    def codes(self) -> torch.Tensor:
        """(N, K) uint8 codes 0..15."""
        low, high = self.nibbles & 0x0F, self.nibbles >> 4
        return torch.stack([low, high], dim=-1).reshape(self.shape)


def quantize_int8(w: torch.Tensor, dtype: torch.dtype) -> Int8Weight:
    """Symmetric per-row int8 of w (N, K)."""
    wf = w.float()
    scale = wf.abs().amax(dim=1).clamp(min=1e-12) / 127.0  # (N,)
    q = torch.round(wf / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return Int8Weight(q=q, scale=scale.to(dtype))


def quantize_int4(w: torch.Tensor, dtype: torch.dtype, group: int = INT4_GROUP) -> Int4Weight:
    """Asymmetric round-to-nearest int4 of w (N, K) in groups of `group` inputs."""
    n, k = w.shape
    if k % group:
        raise ValueError(f"int4 needs the input size {k} to be a multiple of the group {group}")
    wg = w.float().reshape(n, k // group, group)  # (N, G, group)
    low, high = wg.amin(dim=2), wg.amax(dim=2)  # (N, G)
    scale = ((high - low) / 15.0).clamp(min=1e-12)
    q = torch.round((wg - low[..., None]) / scale[..., None]).clamp(0, 15).to(torch.uint8).reshape(n, k)
    zero = low + 8.0 * scale
    scale_zero = torch.stack([scale.T, zero.T], dim=-1).to(dtype).contiguous()  # (G, N, 2)
    nibbles = q[:, 0::2] | (q[:, 1::2] << 4)  # (N, K // 2)
    return Int4Weight(nibbles=nibbles, scale_zero=scale_zero, packed=_pack_int4(q), group=group)


def _pack_int4(q: torch.Tensor) -> torch.Tensor | None:
    """torch's packed CPU layout, or None where the op is missing or the shape unsupported."""
    pack = getattr(torch, "_convert_weight_to_int4pack_for_cpu", None)
    if pack is None or q.shape[0] % 16:  # the kernel tiles outputs by 16
        return None
    return pack(q.to(torch.int32), 1)


def dequantize(weight: Int8Weight | Int4Weight) -> torch.Tensor:
    if isinstance(weight, Int8Weight):
        return weight.q.to(weight.scale.dtype) * weight.scale[:, None]
    scale = weight.scale_zero[..., 0].T.repeat_interleave(weight.group, dim=1)  # (N, K)
    zero = weight.scale_zero[..., 1].T.repeat_interleave(weight.group, dim=1)
    return (weight.codes().to(scale.dtype) - 8) * scale + zero


def quant_linear_ref(x: torch.Tensor, weight: Int8Weight | Int4Weight, bias: torch.Tensor | None) -> torch.Tensor:
    return F.linear(x, dequantize(weight).to(x.dtype), bias)


def _fast_path_ok(x: torch.Tensor, weight: Int8Weight | Int4Weight) -> bool:
    if x.device.type != "cpu" or x.dtype != torch.bfloat16:
        return False  # the packed kernels are fast for bf16 activations only (fp32: 30x slower)
    if isinstance(weight, Int4Weight):
        # The packed int4 kernel is a GEMV at heart: from a few hundred rows (prefill
        # chunks) dequantizing once and running a bf16 GEMM is faster (notes: 5.4 vs 3.6 ms
        # at 512 rows, 576 -> 1536).
        rows = x.numel() // x.shape[-1]
        return rows < INT4_PACKED_MAX_ROWS and weight.packed is not None and hasattr(torch, "_weight_int4pack_mm_for_cpu")
    return hasattr(torch, "_weight_int8pack_mm")


def quant_linear(x: torch.Tensor, weight: Int8Weight | Int4Weight, bias: torch.Tensor | None = None) -> torch.Tensor:
    """x (..., K) -> (..., N). Dispatches to the packed CPU kernel where it applies."""
    in_features = weight.q.shape[1] if isinstance(weight, Int8Weight) else weight.shape[1]
    if x.shape[-1] != in_features:
        raise ValueError(f"quant_linear: x has {x.shape[-1]} inputs, the weight {in_features}")
    if not _fast_path_ok(x, weight):
        return quant_linear_ref(x, weight, bias)
    flat = x.reshape(-1, x.shape[-1])  # (M, K)
    if isinstance(weight, Int8Weight):
        out = torch._weight_int8pack_mm(flat, weight.q, weight.scale)
    else:
        out = torch._weight_int4pack_mm_for_cpu(flat, weight.packed, weight.group, weight.scale_zero)
    if bias is not None:
        out = out + bias
    return out.reshape(*x.shape[:-1], out.shape[-1])
