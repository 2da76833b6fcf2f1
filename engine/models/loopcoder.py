"""IQuestLoopCoder: the Llama stack run `loop_num` times with shared weights.

Loop 1 is a plain causal pass; layer l stores its K1/V1 (cache layer l). In every later
loop, layer l computes q, k, v from the running hidden state and mixes two attentions
with a per-head, per-token gate computed from the rotated q:

    A = attention(q, K1_l, V1_l)                      causal, all positions <= t
    B = attention(q, K_loop_l, V_loop_l, window=W)    keys t-W+1 .. t
    g = sigmoid(q . w_gate[head] + b_gate[head])
    h = h + o_proj(g * A + (1 - g) * B);  h = h + mlp(post_norm(h))

Loop k >= 2 keeps its own K/V in cache layer (k-1) * num_layers + l. Every position's
loop-k K/V is kept (like loop 1's), so any prefix of the cache is exact and a chunked
prefill or an edit resumes from the longest common prefix.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from loopcoder.kernels.attention import AttentionMetadata, loop_attention, loop_gate

from ..config import ModelConfig
from .layers import DecoderLayer
from .llama import KVCacheLike, LlamaForCausalLM

# Older exports keep the gates outside the layers.
_LEGACY_GATE = re.compile(r"^model\.gate_projections\.(\d+)\.(weight|bias)$")


class LoopGate(nn.Module):
    def __init__(self, num_heads: int, head_dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(num_heads, head_dim))
        self.bias = nn.Parameter(torch.zeros(num_heads))

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        """q: (T, Hq, D) rotated -> gate (T, Hq, 1)."""
        return loop_gate(q, self.weight, self.bias)


def loop_layer_forward(
    layer: DecoderLayer,
    gate: LoopGate,
    h: torch.Tensor,
    meta: AttentionMetadata,
    global_cache: tuple[torch.Tensor, torch.Tensor],
    local_cache: tuple[torch.Tensor, torch.Tensor],
    window: int,
) -> torch.Tensor:
    attn = layer.self_attn
    q = attn.project_store(layer.input_layernorm(h), meta, local_cache)
    # g * A + (1 - g) * B: A over loop 1's pages, B over this loop's last `window` keys.
    mixed = loop_attention(q, global_cache, local_cache, meta, attn.scale, window, gate.weight, gate.bias)  # (T, Hq, D)
    x, h = layer.post_attention_layernorm(attn.o_proj(mixed.flatten(1)), residual=h)
    return h + layer.mlp(x)


class IQuestLoopCoderForCausalLM(LlamaForCausalLM):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        for layer in self.model.layers:
            layer.gate_projection = LoopGate(cfg.num_attention_heads, cfg.head_dim)

    def forward(self, input_ids: torch.Tensor, meta: AttentionMetadata, kv: KVCacheLike) -> torch.Tensor:
        cfg = self.config
        layers = self.model.layers
        h = self.model.embed_tokens(input_ids)
        for i, layer in enumerate(layers):
            h = layer(h, meta, kv.layer(i))
        for loop in range(1, cfg.loop_num):
            for i, layer in enumerate(layers):
                local = kv.layer(loop * len(layers) + i)
                h = loop_layer_forward(layer, layer.gate_projection, h, meta, kv.layer(i), local, cfg.loop_window_size)
        return self.model.norm(h)

    def prepare_cpu_decoder(self) -> str:
        self.cpu_decoder = None
        self.cpu_decoder_status = "off: the Loop model's second pass (a gated pair of attentions) runs layer by layer"
        return self.cpu_decoder_status

    def checkpoint_name(self, name: str) -> str:
        legacy = _LEGACY_GATE.match(name)
        if legacy:
            return f"model.layers.{legacy.group(1)}.gate_projection.{legacy.group(2)}"
        return name

    def init_random(self, seed: int = 0, std: float = 0.02) -> None:
        super().init_random(seed, std)
        # Released checkpoints keep gates near 0.88: bias ~ 2, weights small.
        with torch.no_grad():
            for layer in self.model.layers:
                layer.gate_projection.bias.fill_(2.0)
