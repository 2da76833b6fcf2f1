"""Weight-only quantization of a loaded model's linear layers (CPU decode speed).

`quantize_model(model, "int4")` replaces every decoder projection by an int4 layer
(groups of 32 inputs, the GGUF Q4_1 grid) and the LM head by int8; `"int8"` makes all
of them int8. Embeddings, norms and Loop gates stay in the model's dtype. The model
should run in bfloat16: that is what the packed CPU kernels are fast for.
"""

from __future__ import annotations

import torch
from torch import nn

from loopcoder.kernels.quant_linear import INT4_GROUP, Int4Weight, Int8Weight, quant_linear, quantize_int4, quantize_int8

from .errors import InvalidRequestError

QUANT_MODES = ("none", "int8", "int4")


class QuantLinear(nn.Module):
    def __init__(self, weight: Int8Weight | Int4Weight, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.weight_q = weight
        self.bias = None if bias is None else nn.Parameter(bias.detach(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return quant_linear(x, self.weight_q, self.bias)

    def weight_bytes(self) -> int:
        w = self.weight_q
        parts = (w.q, w.scale) if isinstance(w, Int8Weight) else (w.packed if w.packed is not None else w.nibbles, w.scale_zero)
        return sum(t.numel() * t.element_size() for t in parts)


def quantize_model(model: nn.Module, mode: str, dtype: torch.dtype) -> nn.Module:
    if mode not in QUANT_MODES:
        raise InvalidRequestError(f"quantization {mode!r} is not one of {', '.join(QUANT_MODES)}")
    if mode == "none":
        return model
    for parent_name, parent in list(model.named_modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Linear):
                full = f"{parent_name}.{name}" if parent_name else name
                setattr(parent, name, _quantized(child, full, mode, dtype))
    return model


def _quantized(linear: nn.Linear, name: str, mode: str, dtype: torch.dtype) -> QuantLinear:
    w = linear.weight.detach()
    use_int4 = mode == "int4" and name != "lm_head" and w.shape[1] % INT4_GROUP == 0
    weight = quantize_int4(w, dtype) if use_int4 else quantize_int8(w, dtype)
    return QuantLinear(weight, linear.bias)


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
