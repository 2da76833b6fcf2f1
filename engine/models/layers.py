"""Layers shared by every Llama-family model: RMSNorm, rotary embedding, SwiGLU MLP, attention;
and StarCoder2's LayerNorm and GELU MLP, which the config chooses in their place.

Tokens travel flattened: a batch of sequences is one (T, hidden) tensor, and
`AttentionMetadata` says where each sequence starts (nano-vllm's layout).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from loopcoder.kernels.attention import AttentionMetadata, LayerCache, paged_attention
from loopcoder.kernels.fp8_linear import Fp8Weight
from loopcoder.kernels.gguf_linear import GGUFWeight
from loopcoder.kernels.layernorm import layer_norm
from loopcoder.kernels.rmsnorm import rms_norm
from loopcoder.kernels.rope import rope_store
from loopcoder.kernels.swiglu import silu_mul

from ..config import ModelConfig, RopeScaling
from ..quantization import QuantLinear


class RMSNorm(nn.Module):
    def __init__(self, size: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None):
        """x (T, hidden) -> normed; with `residual`, (normed x + residual, x + residual) in one
        pass (kernels/rmsnorm.py: float32 normalisation as the HF reference)."""
        return rms_norm(x, self.weight, self.eps, residual)


class LayerNorm(nn.Module):
    """StarCoder2's norm: (x - mean) / sqrt(var + eps) * weight + bias; called as RMSNorm is."""

    def __init__(self, size: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.bias = nn.Parameter(torch.zeros(size))
        self.eps = eps

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None):
        """x (T, hidden) -> normed; with `residual`, (normed x + residual, x + residual) in one pass."""
        return layer_norm(x, self.weight, self.bias, self.eps, residual)


def norm_layer(cfg: ModelConfig, size: int) -> RMSNorm | LayerNorm:
    return LayerNorm(size, cfg.norm_eps) if cfg.norm == "layer" else RMSNorm(size, cfg.norm_eps)


def rope_inv_freq(head_dim: int, theta: float, scaling: RopeScaling | None) -> torch.Tensor:
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    if scaling is None:
        return inv_freq
    if scaling.rope_type == "linear":
        return inv_freq / scaling.factor
    # llama3: keep high frequencies, divide low ones by `factor`, blend in between.
    low_wavelen = scaling.original_max_position_embeddings / scaling.low_freq_factor
    high_wavelen = scaling.original_max_position_embeddings / scaling.high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > low_wavelen, inv_freq / scaling.factor, inv_freq)
    smooth = (scaling.original_max_position_embeddings / wavelen - scaling.low_freq_factor) / (
        scaling.high_freq_factor - scaling.low_freq_factor
    )
    blended = (1 - smooth) * scaled / scaling.factor + smooth * scaled
    medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    return torch.where(medium, blended, scaled)


class RotaryEmbedding(nn.Module):
    """Half-split (rotate_half) RoPE's float32 cos/sin tables, grown on demand; kernels/rope.py
    applies them while writing K/V into the pages.

    The tables are not buffers: models are built on the meta device and then materialised,
    and a derived table must not be left uninitialised by that.
    """

    def __init__(self, head_dim: int, theta: float, scaling: RopeScaling | None) -> None:
        super().__init__()
        self.head_dim, self.theta, self.scaling = head_dim, theta, scaling
        self._cos: torch.Tensor | None = None
        self._sin: torch.Tensor | None = None
        # Tables a larger one replaced stay allocated: a captured CUDA graph may read them.
        self._retired: list[tuple[torch.Tensor, torch.Tensor]] = []

    def tables(self, length: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(cos, sin), each (L, head_dim) float32 with L >= length (a host int: reading a
        positions tensor's max would wait for the device)."""
        if self._cos is None or self._cos.shape[0] < length or self._cos.device != device:
            size = max(length, 2 * (0 if self._cos is None else self._cos.shape[0]), 256)
            if self._cos is not None:
                self._retired.append((self._cos, self._sin))
            inv_freq = rope_inv_freq(self.head_dim, self.theta, self.scaling).to(device)
            positions = torch.arange(size, device=device, dtype=torch.float32)
            freqs = torch.outer(positions, inv_freq)  # (size, D/2)
            emb = torch.cat((freqs, freqs), dim=-1)  # (size, D)
            self._cos, self._sin = emb.cos(), emb.sin()
        return self._cos, self._sin

    def reserve(self, length: int, device: torch.device | str) -> None:
        """Build the tables for positions < length now (a CUDA graph must never see them replaced)."""
        self.tables(length, torch.device(device))


def joined_linear(parts: list[nn.Module]) -> nn.Module | None:
    """One layer whose output is the concatenation of `parts`' outputs for the same input
    (their weights stacked by rows), or None where they cannot be joined: bf16/fp32 linears
    and FP8 layers join (FP8 scales are per output row), and GGUF layers of one type (their
    blocks are per row), int8/int4 layers do not."""
    if len({p.bias is None for p in parts}) != 1:
        return None
    if all(type(p) is nn.Linear for p in parts):
        first = parts[0]
        joined = nn.Linear(first.in_features, sum(p.out_features for p in parts), bias=first.bias is not None,
                           device="meta", dtype=first.weight.dtype)
        joined.weight = nn.Parameter(torch.cat([p.weight.detach() for p in parts]), requires_grad=False)
        if first.bias is not None:
            joined.bias = nn.Parameter(torch.cat([p.bias.detach() for p in parts]), requires_grad=False)
        return joined
    if all(isinstance(p, QuantLinear) and isinstance(p.weight_q, Fp8Weight) for p in parts):
        weight = Fp8Weight(torch.cat([p.weight_q.q for p in parts]), torch.cat([p.weight_q.scale for p in parts], dim=1))
        bias = None if parts[0].bias is None else torch.cat([p.bias.detach() for p in parts])
        return QuantLinear(weight, bias)
    if all(isinstance(p, QuantLinear) and isinstance(p.weight_q, GGUFWeight) for p in parts):
        kinds = {(p.weight_q.type, p.weight_q.in_features) for p in parts}
        if len(kinds) != 1:
            return None  # a K-quant mix stores q/k/v or gate/up in different types
        (kind, k), = kinds
        bias = None if parts[0].bias is None else torch.cat([p.bias.detach() for p in parts])
        return QuantLinear(GGUFWeight(torch.cat([p.weight_q.blocks for p in parts]), kind, k), bias)
    return None


def has_gguf_layers(model: nn.Module) -> bool:
    return any(isinstance(m, QuantLinear) and isinstance(m.weight_q, GGUFWeight) for m in model.modules())


def join_projections(model: nn.Module) -> int:
    """Run q/k/v, and gate/up, of every layer as one matmul each (fewer launches, one
    weight stream per input); returns the layers joined. Call it after loading, sharding
    and quantizing: the joined layers no longer have the checkpoint's names."""
    return sum(m.join_projections() for m in model.modules() if isinstance(m, (Attention, SwiGLU)))


class SwiGLU(nn.Module):
    def __init__(self, hidden: int, intermediate: int, bias: bool = False) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(hidden, intermediate, bias=bias)
        self.up_proj = nn.Linear(hidden, intermediate, bias=bias)
        self.down_proj = nn.Linear(intermediate, hidden, bias=bias)
        self.gate_up_proj: nn.Module | None = None  # join_projections()

    def join_projections(self) -> bool:
        if self.gate_up_proj is not None:
            return False
        joined = joined_linear([self.gate_proj, self.up_proj])
        if joined is None:
            return False
        self.gate_up_proj = joined
        del self.gate_proj, self.up_proj
        return True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gate_up_proj is not None:
            gate, up = self.gate_up_proj(x).chunk(2, dim=-1)  # column views of one product
            return self.down_proj(silu_mul(gate, up))
        return self.down_proj(silu_mul(self.gate_proj(x), self.up_proj(x)))


class GeluMLP(nn.Module):
    """StarCoder2's MLP: down(gelu_tanh(up(x))), no gate. The checkpoint names the two
    projections c_fc and c_proj (models/starcoder2.py maps them)."""

    def __init__(self, hidden: int, intermediate: int, bias: bool) -> None:
        super().__init__()
        self.up_proj = nn.Linear(hidden, intermediate, bias=bias)
        self.down_proj = nn.Linear(intermediate, hidden, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # One torch kernel, as transformers' gelu_pytorch_tanh: nothing to fuse.
        return self.down_proj(F.gelu(self.up_proj(x), approximate="tanh"))


def mlp_layer(cfg: ModelConfig) -> SwiGLU | GeluMLP:
    if cfg.mlp == "gelu":
        return GeluMLP(cfg.hidden_size, cfg.intermediate_size, cfg.mlp_bias)
    return SwiGLU(cfg.hidden_size, cfg.intermediate_size, cfg.mlp_bias)


class Attention(nn.Module):
    """Projections and RoPE; the attention itself runs in kernels/ over paged KV."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.num_heads, self.num_kv_heads, self.head_dim = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        self.scale = cfg.head_dim**-0.5
        q_size, kv_size = self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
        self.q_proj = nn.Linear(cfg.hidden_size, q_size, bias=cfg.qkv_bias)
        self.k_proj = nn.Linear(cfg.hidden_size, kv_size, bias=cfg.qkv_bias)
        self.v_proj = nn.Linear(cfg.hidden_size, kv_size, bias=cfg.qkv_bias)
        self.o_proj = nn.Linear(q_size, cfg.hidden_size, bias=cfg.o_bias)
        self.qkv_proj: nn.Module | None = None  # join_projections()
        self.rotary = RotaryEmbedding(cfg.head_dim, cfg.rope_theta, cfg.rope_scaling)
        if cfg.qk_norm:  # Qwen3
            self.q_norm = RMSNorm(cfg.head_dim, cfg.norm_eps)
            self.k_norm = RMSNorm(cfg.head_dim, cfg.norm_eps)
        self.qk_norm = cfg.qk_norm
        self.window = cfg.sliding_window

    def join_projections(self) -> bool:
        if self.qkv_proj is not None:
            return False
        joined = joined_linear([self.q_proj, self.k_proj, self.v_proj])
        if joined is None:
            return False
        self.qkv_proj = joined
        del self.q_proj, self.k_proj, self.v_proj
        return True

    def project_store(self, x: torch.Tensor, meta: AttentionMetadata, cache: LayerCache) -> torch.Tensor:
        """x: (T, hidden) -> rotated q (T, Hq, D); the rotated k and v go into `cache`'s slots."""
        T = x.shape[0]
        if self.qkv_proj is not None:
            q_size, kv_size = self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
            q, k, v = self.qkv_proj(x).split((q_size, kv_size, kv_size), dim=-1)  # column views of one product
            q, k, v = q.view(T, -1, self.head_dim), k.view(T, -1, self.head_dim), v.view(T, -1, self.head_dim)
        else:
            q = self.q_proj(x).view(T, self.num_heads, self.head_dim)
            k = self.k_proj(x).view(T, self.num_kv_heads, self.head_dim)
            v = self.v_proj(x).view(T, self.num_kv_heads, self.head_dim)
        if self.qk_norm:
            q = self.q_norm(q.reshape(-1, self.head_dim)).view(T, self.num_heads, self.head_dim)
            k = self.k_norm(k.reshape(-1, self.head_dim)).view(T, self.num_kv_heads, self.head_dim)
        cos, sin = self.rotary.tables(max(meta.context_lens), x.device)
        return rope_store(q, k, v, meta.positions, cos, sin, cache[0], cache[1], meta.slot_mapping)

    def attend(self, q: torch.Tensor, cache: LayerCache, meta: AttentionMetadata, window: int | None = None) -> torch.Tensor:
        """Attention of q (T, Hq, D) over the cached keys of each sequence -> (T, Hq, D)."""
        return paged_attention(q, cache[0], cache[1], meta, self.scale, window)

    def forward(self, x: torch.Tensor, meta: AttentionMetadata, cache: LayerCache) -> torch.Tensor:
        q = self.project_store(x, meta, cache)
        out = self.attend(q, cache, meta, self.window)  # (T, Hq, D)
        return self.o_proj(out.flatten(1))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.input_layernorm = norm_layer(cfg, cfg.hidden_size)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = norm_layer(cfg, cfg.hidden_size)
        self.mlp = mlp_layer(cfg)

    def forward(self, h: torch.Tensor, meta: AttentionMetadata, cache: LayerCache) -> torch.Tensor:
        x, h = self.post_attention_layernorm(self.self_attn(self.input_layernorm(h), meta, cache), residual=h)
        return h + self.mlp(x)
