"""One decode step of a Llama-family decoder on the CPU, every layer in one C call.

A decode step of a small model on a few cores is mostly Python: some fifty torch ops a
layer at several microseconds each cost more than the layer's arithmetic (about half of a
token of the 135M default, measured in docs/benchmarks.md). `decoder_cpu.c` runs the whole
stack per step instead: RMSNorm, the GGUF projections (gguf_cpu.c's kernel), RoPE, the K/V
store, decode attention (attention/decode_cpu.c's kernel), SiLU and the residuals.

One file, as every kernel here: the kernel (`decoder_cpu.c`), the torch reference
(`decoder_step_ref`: the same step from the other kernels' references), the blocker
(`decoder_step_blocker`) and the call (`CpuDecoder.run`). It takes layers whose every
projection is GGUF blocks of a type gguf_cpu.c computes (joined or not), RMSNorm, optional
q/k norms (Qwen3), q/k/v biases (Qwen2), a sliding window (Mistral); what it does not take
(the Loop model's gated pair, LayerNorm, float weights) runs layer by layer as before.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .attention.cpu import supported_cpu_attention_isas
from .attention.metadata import AttentionMetadata
from .attention.reference import paged_attention_ref
from .cpu_ext import CpuExtension
from .gguf_linear import GGUFWeight, cpu_kernel_available, gguf_linear_ref
from .kv_store import store_kv_ref
from .rmsnorm import rms_norm_ref
from .rope import rope_ref

KERNEL_ABI_VERSION = 1

_ext = CpuExtension("loopcoder.kernels._decoder_cpu", KERNEL_ABI_VERSION, "CPU decode step")
_kernel = _ext.module


@dataclass(frozen=True)
class Projection:
    weight: GGUFWeight
    bias: torch.Tensor | None = None


@dataclass(frozen=True)
class DecoderShape:
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    eps: float

    @property
    def scale(self) -> float:
        return self.head_dim**-0.5


@dataclass(frozen=True)
class DecoderLayerWeights:
    input_norm: torch.Tensor  # (hidden,)
    post_norm: torch.Tensor
    qkv: tuple[Projection, ...]  # one joined (q | k | v), or q, k, v
    o: Projection
    gate_up: tuple[Projection, ...]  # one joined (gate | up), or gate, up
    down: Projection
    q_norm: torch.Tensor | None = None  # (head_dim,): Qwen3
    k_norm: torch.Tensor | None = None
    window: int | None = None


def decoder_kernel_status() -> str:
    """One line for `loopcoder info`."""
    return f"{_ext.label}: {'every layer in one call' if _kernel is not None else f'none, {_ext.missing}'}"


def decoder_blocker(shape: DecoderShape, layers: list[DecoderLayerWeights]) -> str | None:
    """Why the C step cannot run this model at all (None: it can)."""
    if _kernel is None:
        return _ext.missing
    if not cpu_kernel_available() or not supported_cpu_attention_isas():
        return "the GGUF and attention C extensions it calls are not both loaded"
    if shape.head_dim % 2 or shape.head_dim > 1024:
        return f"head size {shape.head_dim}: it takes an even size up to 1024"
    for i, layer in enumerate(layers):
        for p in (*layer.qkv, layer.o, *layer.gate_up, layer.down):
            if p.weight.blocks.device.type != "cpu":
                return f"layer {i}'s weights are on {p.weight.blocks.device.type}"
    return None


class CpuDecoder:
    """The plan for one model, built once: every layer's pointers in an int64 table, the
    norms and biases as float32 copies the table points into (held here)."""

    def __init__(self, shape: DecoderShape, layers: list[DecoderLayerWeights]) -> None:
        reason = decoder_blocker(shape, layers)
        if reason is not None:
            raise ValueError(f"the CPU decode step cannot run this model: {reason}")
        self.shape, self.layers = shape, layers
        self._keep: list[torch.Tensor] = []
        self._caches: list[tuple[torch.Tensor, torch.Tensor]] | None = None  # bind()
        self._pointers: torch.Tensor | None = None
        self.plan = torch.tensor([self._row(layer) for layer in layers], dtype=torch.int64)
        if self.plan.shape[1] != _kernel.PLAN_SLOTS:
            raise ValueError(f"decoder plan rows of {self.plan.shape[1]} slots, the kernel reads {_kernel.PLAN_SLOTS}")

    def _f32(self, t: torch.Tensor | None) -> int:
        if t is None:
            return 0
        t = t.detach().to(torch.float32).contiguous()
        self._keep.append(t)
        return t.data_ptr()

    def _lin(self, p: Projection) -> list[int]:
        w = p.weight
        return [w.type.id, w.blocks.data_ptr(), w.shape[0], w.in_features, self._f32(p.bias)]

    def _row(self, layer: DecoderLayerWeights) -> list[int]:
        empty = [0] * 5
        qkv = [v for p in layer.qkv for v in self._lin(p)] + empty * (3 - len(layer.qkv))
        gu = [v for p in layer.gate_up for v in self._lin(p)] + empty * (2 - len(layer.gate_up))
        return [self._f32(layer.input_norm), self._f32(layer.post_norm), self._f32(layer.q_norm),
                self._f32(layer.k_norm), layer.window or 0, len(layer.qkv), *qkv, *self._lin(layer.o),
                len(layer.gate_up), *gu, *self._lin(layer.down)]

    def bind(self, caches: list[tuple[torch.Tensor, torch.Tensor]]) -> str | None:
        """Check the model's caches once and keep their pointer table for every later step over
        the same list (None: they fit; else why not, and nothing is kept)."""
        reason = _caches_blocker(self, caches)
        if reason is None:
            self._caches = caches
            self._pointers = torch.tensor([[k.data_ptr(), v.data_ptr()] for k, v in caches], dtype=torch.int64)
        return reason

    def run(self, h: torch.Tensor, meta: AttentionMetadata, caches: list[tuple[torch.Tensor, torch.Tensor]],
            cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """h (B, hidden), one row per sequence -> the last layer's output (B, hidden) float32;
        each layer's K/V written into `caches` (its (k, v), (blocks, block_size, Hkv, D)).
        Pass the same list every step: it is checked when it changes."""
        if caches is not self._caches and (reason := self.bind(caches)) is not None:
            raise ValueError(f"the CPU decode step cannot write these caches: {reason}")
        s = self.shape
        out = h.to(torch.float32, copy=True).contiguous()
        k0 = caches[0][0]
        num_blocks, block_size = k0.shape[0], k0.shape[1]
        tables = meta.block_tables.contiguous()
        cos, sin = cos.contiguous(), sin.contiguous()
        _kernel.step(self.plan.data_ptr(), len(self.layers), s.hidden, s.heads, s.kv_heads, s.head_dim, s.intermediate,
                     s.eps, s.scale, out.data_ptr(), out.shape[0], meta.positions.data_ptr(), meta.slot_mapping.data_ptr(),
                     tables.data_ptr(), tables.shape[1], self._pointers.data_ptr(), num_blocks, block_size,
                     int(k0.dtype == torch.bfloat16), cos.data_ptr(), sin.data_ptr(), cos.shape[0], torch.get_num_threads())
        return out


def _caches_blocker(decoder: CpuDecoder, caches: list[tuple[torch.Tensor, torch.Tensor]]) -> str | None:
    s = decoder.shape
    if len(caches) != len(decoder.layers):
        return f"{len(caches)} cache layers for {len(decoder.layers)} model layers"
    k0 = caches[0][0]
    if k0.dtype not in (torch.float32, torch.bfloat16) or k0.shape[2:] != (s.kv_heads, s.head_dim):
        return f"a {k0.dtype} cache of {tuple(k0.shape)}: it takes float32 or bfloat16 pages of ({s.kv_heads}, {s.head_dim})"
    for k, v in caches:
        if k.device.type != "cpu" or k.shape != k0.shape or v.shape != k0.shape or k.dtype != k0.dtype \
                or v.dtype != k0.dtype or not (k.is_contiguous() and v.is_contiguous()):
            return "the caches are not all contiguous CPU pages of one shape and dtype"
    return None


def decoder_step_blocker(decoder: CpuDecoder, h: torch.Tensor, meta: AttentionMetadata,
                         caches: list[tuple[torch.Tensor, torch.Tensor]], cos: torch.Tensor) -> str | None:
    """Why this step cannot run in C (None: it can)."""
    s = decoder.shape
    if h.shape[0] != meta.num_seqs or any(b - a != 1 for a, b in zip(meta.query_start, meta.query_start[1:])):
        return "not a decode step (more than one query row per sequence)"
    if h.device.type != "cpu" or h.shape[1] != s.hidden:
        return f"hidden rows {tuple(h.shape)} on {h.device.type}"
    if caches is not decoder._caches and (reason := decoder.bind(caches)) is not None:
        return reason
    if cos.dtype != torch.float32 or cos.shape[1] != s.head_dim or max(meta.context_lens) > cos.shape[0]:
        return "the RoPE table does not cover the step's positions"
    return None


def decoder_step_ref(shape: DecoderShape, layers: list[DecoderLayerWeights], h: torch.Tensor, meta: AttentionMetadata,
                     caches: list[tuple[torch.Tensor, torch.Tensor]], cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """What `CpuDecoder.run` computes, from the other kernels' torch references, in float32
    (the caches in their own dtype)."""
    s = shape
    h = h.to(torch.float32)
    rows, dtype = h.shape[0], caches[0][0].dtype

    def project(parts: tuple[Projection, ...], x: torch.Tensor) -> torch.Tensor:
        return torch.cat([gguf_linear_ref(x, p.weight, None if p.bias is None else p.bias.float()) for p in parts], dim=-1)

    for layer, (k_cache, v_cache) in zip(layers, caches):
        x = rms_norm_ref(h, layer.input_norm.float(), s.eps)
        q, k, v = project(layer.qkv, x).split((s.heads * s.head_dim, s.kv_heads * s.head_dim, s.kv_heads * s.head_dim), -1)
        q, k, v = (t.reshape(rows, -1, s.head_dim) for t in (q, k, v))
        if layer.q_norm is not None:
            q = rms_norm_ref(q, layer.q_norm.float(), s.eps)
            k = rms_norm_ref(k, layer.k_norm.float(), s.eps)
        q, k = rope_ref(q, k, meta.positions, cos, sin)
        store_kv_ref(k.to(dtype), v.to(dtype), k_cache, v_cache, meta.slot_mapping)
        attn = paged_attention_ref(q.to(dtype), k_cache, v_cache, meta, s.scale, layer.window)
        h = h + project((layer.o,), attn.reshape(rows, -1).float())
        x = rms_norm_ref(h, layer.post_norm.float(), s.eps)
        gate, up = project(layer.gate_up, x).chunk(2, dim=-1)
        h = h + project((layer.down,), F.silu(gate) * up)
    return h
