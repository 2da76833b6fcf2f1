"""Linear layers whose weights stay in the GGUF file's own blocks: Q4_0, Q4_1, Q5_0, Q5_1,
Q8_0, Q4_K, Q5_K and Q6_K, computed as stored, never quantized a second time.

The CPU kernel (`gguf_cpu.c`, a C extension built by `pip install` where a compiler
exists) and the dispatcher (`gguf_linear`); the blocks' types, the weight and the torch
reference (`dequantize_ref`: what the blocks hold, in float32, on any device) are in
`gguf_blocks.py`, the GPU's Triton kernels in `gguf_triton.py`. The dispatcher sends CUDA
tensors to Triton (kernels/dispatch.py), CPU tensors to the C kernel, and the rest, or
what neither takes, to the reference.

The CPU kernel quantizes the activations to int8 per 32 (as llama.cpp does for its dot
products) and sums integer products in AVX2 or AVX-512 VNNI registers, reading each
weight byte once per call: batch-1 decode runs at memory speed. From `GEMM_MIN_ROWS`
activation rows (prefill chunks) the weight is dequantized once and the product is a
float GEMM instead, which is exact to the blocks' values and faster there.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .cpu_ext import CpuExtension
from .dispatch import triton_blocker, use_triton
from .gguf_blocks import GGUF_TYPES, GGUFType, GGUFWeight, dequantize_ref, gguf_linear_ref, gguf_type
from .gguf_triton import gguf_dequantize_triton, gguf_linear_triton, gguf_triton_blocker

# The blocks' names, re-exported: the engine and the tests import them from here.
__all__ = ["GEMM_MIN_ROWS", "GGUF_TYPES", "GGUFType", "GGUFWeight", "cpu_kernel_available", "cpu_kernel_status",
           "dequantize", "dequantize_ref", "gguf_linear", "gguf_linear_ref", "gguf_type", "set_cpu_isa",
           "supported_cpu_isas"]

# From this many activation rows, dequantize once and run a float GEMM (prefill chunks).
GEMM_MIN_ROWS = 32

KERNEL_ABI_VERSION = 1


# -- the CPU kernel -------------------------------------------------------------------


_ext = CpuExtension("loopcoder.kernels._gguf_cpu", KERNEL_ABI_VERSION, "GGUF CPU kernel")
_kernel = _ext.module
cpu_kernel_status = _ext.status  # one line for `loopcoder info`
supported_cpu_isas = _ext.isas
set_cpu_isa = _ext.set_isa


def cpu_kernel_available() -> bool:
    return _kernel is not None


def dequantize(weight: GGUFWeight) -> torch.Tensor:
    """(N, K) float32: through the C kernel on the CPU, the Triton kernel on CUDA, else the reference."""
    if use_triton("gguf_dequantize", lambda: triton_blocker(weight.blocks)):
        return gguf_dequantize_triton(weight, torch.float32)
    if _kernel is None or weight.blocks.device.type != "cpu":
        return dequantize_ref(weight)
    n, k = weight.shape
    out = torch.empty(n, k, dtype=torch.float32)
    blocks = weight.blocks.contiguous()
    _kernel.dequantize(weight.type.id, blocks.data_ptr(), n, k, out.data_ptr(), torch.get_num_threads())
    return out


def _kernel_ok(x: torch.Tensor, weight: GGUFWeight) -> bool:
    return (_kernel is not None and x.device.type == "cpu" and weight.blocks.device.type == "cpu"
            and x.dtype in (torch.float32, torch.bfloat16))


def gguf_linear(x: torch.Tensor, weight: GGUFWeight, bias: torch.Tensor | None = None) -> torch.Tensor:
    """x (..., K) -> (..., N) in x's dtype."""
    n, k = weight.shape
    if x.shape[-1] != k:
        raise ValueError(f"gguf_linear: x has {x.shape[-1]} inputs, the weight {k}")
    if use_triton("gguf_linear", lambda: gguf_triton_blocker(x, weight, bias)):
        return gguf_linear_triton(x, weight, bias)
    if not _kernel_ok(x, weight):
        return gguf_linear_ref(x, weight, bias)
    flat = x.reshape(-1, k)
    rows = flat.shape[0]
    if rows == 0:
        return x.new_empty(*x.shape[:-1], n)
    if rows >= GEMM_MIN_ROWS:
        out = F.linear(flat, dequantize(weight).to(x.dtype), bias)
        return out.reshape(*x.shape[:-1], n)
    flat = flat.contiguous()
    out = torch.empty(rows, n, dtype=x.dtype)
    bf16 = int(x.dtype == torch.bfloat16)
    _kernel.matmul(weight.type.id, weight.blocks.data_ptr(), n, k, flat.data_ptr(), bf16, rows, out.data_ptr(), bf16,
                   torch.get_num_threads())
    if bias is not None:
        out += bias
    return out.reshape(*x.shape[:-1], n)
