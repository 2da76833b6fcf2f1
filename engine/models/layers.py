"""Layers shared by every Llama-family model: RMSNorm, rotary embedding, SwiGLU MLP, attention.

Tokens travel flattened: a batch of sequences is one (T, hidden) tensor, and
`AttentionMetadata` says where each sequence starts (nano-vllm's layout).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from loopcoder.kernels.attention import paged_attention
from loopcoder.kernels.kv_store import store_kv

from ..attention_metadata import AttentionMetadata
from ..config import ModelConfig, RopeScaling

LayerCache = tuple[torch.Tensor, torch.Tensor]  # (k_cache, v_cache), each (num_blocks, block_size, Hkv, D)


class RMSNorm(nn.Module):
    def __init__(self, size: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Normalise in float32 like the HF reference, then scale in the weight's dtype.
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * xf.to(x.dtype)


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
    """Half-split (rotate_half) RoPE, with a cos/sin table grown on demand.

    The table is not a buffer: models are built on the meta device and then
    materialised, and a derived table must not be left uninitialised by that.
    """

    def __init__(self, head_dim: int, theta: float, scaling: RopeScaling | None) -> None:
        super().__init__()
        self.head_dim, self.theta, self.scaling = head_dim, theta, scaling
        self._cos: torch.Tensor | None = None
        self._sin: torch.Tensor | None = None
        # Every layer of a step rotates at the same positions: gather cos/sin once a step.
        self._step: tuple[torch.Tensor, torch.dtype, torch.Tensor, torch.Tensor] | None = None

    def _table(self, length: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if self._cos is None or self._cos.shape[0] < length or self._cos.device != device:
            size = max(length, 2 * (0 if self._cos is None else self._cos.shape[0]), 256)
            inv_freq = rope_inv_freq(self.head_dim, self.theta, self.scaling).to(device)
            positions = torch.arange(size, device=device, dtype=torch.float32)
            freqs = torch.outer(positions, inv_freq)  # (size, D/2)
            emb = torch.cat((freqs, freqs), dim=-1)  # (size, D)
            self._cos, self._sin = emb.cos(), emb.sin()
        return self._cos, self._sin

    def forward(self, positions: torch.Tensor, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q: (T, Hq, D), k: (T, Hkv, D), positions: (T,) -> rotated q, k."""
        if self._step is None or self._step[0] is not positions or self._step[1] != q.dtype:
            cos_table, sin_table = self._table(int(positions.max()) + 1, q.device)
            cos = cos_table[positions].unsqueeze(1).to(q.dtype)  # (T, 1, D)
            sin = sin_table[positions].unsqueeze(1).to(q.dtype)
            self._step = (positions, q.dtype, cos, sin)
        cos, sin = self._step[2], self._step[3]
        return q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class SwiGLU(nn.Module):
    def __init__(self, hidden: int, intermediate: int) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(hidden, intermediate, bias=False)
        self.up_proj = nn.Linear(hidden, intermediate, bias=False)
        self.down_proj = nn.Linear(intermediate, hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


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
        self.o_proj = nn.Linear(q_size, cfg.hidden_size, bias=False)
        self.rotary = RotaryEmbedding(cfg.head_dim, cfg.rope_theta, cfg.rope_scaling)

    def project(self, x: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x: (T, hidden) -> rotated q (T, Hq, D), rotated k (T, Hkv, D), v (T, Hkv, D)."""
        T = x.shape[0]
        q = self.q_proj(x).view(T, self.num_heads, self.head_dim)
        k = self.k_proj(x).view(T, self.num_kv_heads, self.head_dim)
        v = self.v_proj(x).view(T, self.num_kv_heads, self.head_dim)
        q, k = self.rotary(positions, q, k)
        return q, k, v

    def attend(self, q: torch.Tensor, cache: LayerCache, meta: AttentionMetadata, window: int | None = None) -> torch.Tensor:
        """Attention of q (T, Hq, D) over the cached keys of each sequence -> (T, Hq, D)."""
        return paged_attention(q, cache[0], cache[1], meta, self.scale, window)

    def forward(self, x: torch.Tensor, meta: AttentionMetadata, cache: LayerCache) -> torch.Tensor:
        q, k, v = self.project(x, meta.positions)
        store_kv(k, v, cache[0], cache[1], meta.slot_mapping)
        out = self.attend(q, cache, meta)  # (T, Hq, D)
        return self.o_proj(out.flatten(1))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = SwiGLU(cfg.hidden_size, cfg.intermediate_size)

    def forward(self, h: torch.Tensor, meta: AttentionMetadata, cache: LayerCache) -> torch.Tensor:
        h = h + self.self_attn(self.input_layernorm(h), meta, cache)
        return h + self.mlp(self.post_attention_layernorm(h))
