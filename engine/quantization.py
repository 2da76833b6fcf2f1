"""Quantization of a loaded model's linear layers: int8/int4 weight-only (CPU decode speed)
and FP8 (GPU decode speed: e4m3 weights with per-channel scales, per-token activation
scales, kernels/fp8_linear.py).

`quantize_model(model, "int4")` replaces every decoder projection by an int4 layer
(groups of 32 inputs, the GGUF Q4_1 grid) and the LM head by int8; `"int8"` makes all
of them int8. Embeddings, norms and Loop gates stay in the model's dtype. The model
should run in bfloat16: that is what the packed CPU kernels are fast for.
"""

from __future__ import annotations

import torch
from torch import nn

from loopcoder.kernels.fp8_linear import Fp8Weight, fp8_linear, quantize_fp8
from loopcoder.kernels.gguf_linear import GGUFWeight, gguf_linear
from loopcoder.kernels.quant_linear import INT4_GROUP, Int4Weight, Int8Weight, quant_linear, quantize_int4, quantize_int8

from .errors import InvalidRequestError

# "gguf": the linear layers keep a GGUF file's own blocks (kernels/gguf_linear.py: the C kernel
# on the CPU, Triton on CUDA), never quantized again; layers stored in other types stay in the
# model's dtype.
QUANT_MODES = ("none", "int8", "int4", "fp8", "gguf")


class QuantLinear(nn.Module):
    """A quantized linear layer; with `tp` a row-parallel one (engine/parallel): this rank's
    input columns, its output summed over the ranks."""

    def __init__(self, weight: Int8Weight | Int4Weight | Fp8Weight | GGUFWeight, bias: torch.Tensor | None,
                 tp=None) -> None:
        super().__init__()
        self.weight_q = weight
        self.bias = None if bias is None else nn.Parameter(bias.detach(), requires_grad=False)
        self.tp = tp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.tp is None:
            return self._local(x, self.bias)
        out = self.tp.all_reduce(self._local(x, None))  # every rank holds the whole bias: added once, after
        return out if self.bias is None else out + self.bias

    def _local(self, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if isinstance(self.weight_q, Fp8Weight):
            return fp8_linear(x, self.weight_q, bias)
        if isinstance(self.weight_q, GGUFWeight):
            return gguf_linear(x, self.weight_q, bias)
        return quant_linear(x, self.weight_q, bias)

    def weight_bytes(self) -> int:
        w = self.weight_q
        if isinstance(w, GGUFWeight):
            return w.nbytes()
        if isinstance(w, Int4Weight):
            parts = (w.packed if w.packed is not None else w.nibbles, w.scale_zero)
        else:
            parts = (w.q, w.scale)
        return sum(t.numel() * t.element_size() for t in parts)


def quantize_model(model: nn.Module, mode: str, dtype: torch.dtype) -> nn.Module:
    check_quant_device(mode, next(model.parameters()).device)
    for name, (parent, attr, linear) in quantized_linears(model, mode).items():
        setattr(parent, attr, quantized(linear.weight.detach(), name, mode, dtype, linear))
    return model


def check_quant_device(mode: str, device: torch.device) -> None:
    if mode not in QUANT_MODES:
        raise InvalidRequestError(f"quantization {mode!r} is not one of {', '.join(QUANT_MODES)}")
    if mode == "gguf" and device.type not in ("cpu", "cuda"):
        raise InvalidRequestError(f"--quant gguf computes a GGUF file's blocks on the CPU or a CUDA GPU, not on "
                                  f"{device.type}; use --quant none there")
    if mode == "fp8" and device.type == "mps":
        raise InvalidRequestError("--quant fp8 runs on CUDA GPUs of compute capability 8.9 or newer; MPS has no "
                                  "float8 matrix products: use --quant none, int8 or int4 on mps")
    if mode == "fp8" and device.type == "cuda" and torch.cuda.get_device_capability(device) < (8, 9):
        raise InvalidRequestError(f"--quant fp8 needs a GPU of compute capability 8.9 or newer (Ada, Hopper); "
                                  f"{torch.cuda.get_device_name(device)} has {torch.cuda.get_device_capability(device)}")


def quantized_linears(model: nn.Module, mode: str) -> dict[str, tuple[nn.Module, str, nn.Module]]:
    """The linear layers `mode` quantizes: full name -> (parent, attribute, layer). Plain
    and row-parallel linears (engine/parallel); the LM head too, but in FP8 mode."""
    found = {}
    for parent_name, parent in list(model.named_modules()):
        for attr, child in list(parent.named_children()):
            full = f"{parent_name}.{attr}" if parent_name else attr
            linear = type(child) is nn.Linear or getattr(child, "row_parallel", False)
            # FP8 keeps the LM head in the model's dtype: 1-2% of a large model's bytes, all of the logits' accuracy.
            if linear and mode != "none" and not (mode == "fp8" and full == "lm_head"):
                found[full] = (parent, attr, child)
    return found


def quantized(w: torch.Tensor | GGUFWeight, name: str, mode: str, dtype: torch.dtype, layer: nn.Module) -> nn.Module:
    """The quantized replacement of `layer` (named `name`) with weight w (N, K): its bias,
    and its all-reduce where it is row-parallel. Scales are per output row, so a rank's
    shard quantizes the same whether cut before or after. In "gguf" mode a GGUF file's
    blocks become a QuantLinear as they are, and a float weight a plain nn.Linear."""
    bias, tp = getattr(layer, "bias", None), getattr(layer, "tp", None) if getattr(layer, "row_parallel", False) else None
    if isinstance(w, GGUFWeight):
        return QuantLinear(w, bias, tp)
    if mode == "gguf":  # a layer the file stores in another type: kept as it is, in the model's dtype
        dense = nn.Linear(w.shape[1], w.shape[0], bias=bias is not None, device="meta")
        dense.weight = nn.Parameter(w.to(dtype), requires_grad=False)
        dense.bias = None if bias is None else nn.Parameter(bias.detach(), requires_grad=False)
        return dense
    if mode == "fp8":
        return QuantLinear(quantize_fp8(w), bias, tp)
    use_int4 = mode == "int4" and name != "lm_head" and w.shape[1] % INT4_GROUP == 0
    return QuantLinear(quantize_int4(w, dtype) if use_int4 else quantize_int8(w, dtype), bias, tp)


def weight_bytes(model: nn.Module) -> int:
    """Bytes of weights a decode step streams: parameters plus quantized layers (tied ones once)."""
    seen: set[int] = set()
    total = 0
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel() * p.element_size()
    total += sum(m.weight_bytes() for m in model.modules() if isinstance(m, QuantLinear))
    return total
