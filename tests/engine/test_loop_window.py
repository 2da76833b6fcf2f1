"""Branch B (windowed self-attention of loops >= 2) in isolation.

With the gate bias at -inf, g = 0 and loop 2's attention output is B alone. An
independent, naive re-implementation of that path must then agree with the model.
"""

import math

import torch

from .helpers import tiny_engine


def naive_loop_forward(model, ids: list[int]) -> torch.Tensor:
    """Plain-torch full-sequence Loop forward, written from DESIGN.md with loops over positions."""
    cfg = model.config
    T, H, Hkv, D, W = len(ids), cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim, cfg.loop_window_size
    layers = model.model.layers
    inv_freq = 1.0 / (cfg.rope_theta ** (torch.arange(0, D, 2).float() / D))
    angles = torch.outer(torch.arange(T).float(), inv_freq)
    cos, sin = torch.cat([angles, angles], -1).cos(), torch.cat([angles, angles], -1).sin()

    def rope(x):  # (T, heads, D)
        x1, x2 = x[..., : D // 2], x[..., D // 2 :]
        return x * cos[:, None] + torch.cat([-x2, x1], -1) * sin[:, None]

    def norm(mod, x):
        return mod.weight * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + mod.eps)

    def attend(q, k, v, lo_of):  # q (T,H,D), k/v (T,Hkv,D)
        out = torch.zeros(T, H, D)
        for t in range(T):
            lo = lo_of(t)
            for h in range(H):
                kh, vh = k[lo : t + 1, h // (H // Hkv)], v[lo : t + 1, h // (H // Hkv)]
                out[t, h] = torch.softmax(kh @ q[t, h] / math.sqrt(D), 0) @ vh
        return out

    def qkv(layer, x):
        a = layer.self_attn
        return (rope(a.q_proj(x).view(T, H, D)), rope(a.k_proj(x).view(T, Hkv, D)), a.v_proj(x).view(T, Hkv, D))

    h = model.model.embed_tokens(torch.tensor(ids))
    global_kv = []
    for layer in layers:
        q, k, v = qkv(layer, norm(layer.input_layernorm, h))
        global_kv.append((k, v))
        h = h + layer.self_attn.o_proj(attend(q, k, v, lambda t: 0).flatten(1))
        h = h + layer.mlp(norm(layer.post_attention_layernorm, h))
    for _ in range(1, cfg.loop_num):
        for layer, (k1, v1) in zip(layers, global_kv):
            q, k, v = qkv(layer, norm(layer.input_layernorm, h))
            a = attend(q, k1, v1, lambda t: 0)
            b = attend(q, k, v, lambda t: max(0, t - W + 1))
            g = torch.sigmoid((q * layer.gate_projection.weight).sum(-1) + layer.gate_projection.bias)[..., None]
            h = h + layer.self_attn.o_proj((g * a + (1 - g) * b).flatten(1))
            h = h + layer.mlp(norm(layer.post_attention_layernorm, h))
    return model.lm_head(norm(model.model.norm, h))


def forced_gate_engine(bias: float, window: int = 3, loop_num: int = 2):
    engine = tiny_engine("iquestloopcoder", loop_window_size=window, loop_num=loop_num, block_size=4, prefill_chunk=5)
    with torch.no_grad():
        for layer in engine.model.model.layers:
            layer.gate_projection.weight.zero_()
            layer.gate_projection.bias.fill_(bias)
    return engine


@torch.no_grad()
def test_branch_b_only_matches_naive_window():
    engine = forced_gate_engine(bias=-float("inf"), window=3)
    ids = [5, 17, 3, 88, 41, 9, 9, 60, 2, 33, 71, 12, 8]  # 13 tokens > W = 3
    torch.testing.assert_close(engine.logits(ids), naive_loop_forward(engine.model, ids), atol=1e-5, rtol=0)


@torch.no_grad()
def test_branch_b_only_cached_decode_matches():
    engine = forced_gate_engine(bias=-float("inf"), window=3)
    ids = [5, 17, 3, 88, 41, 9, 9, 60, 2, 33, 71, 12, 8]
    for n in range(4, len(ids) + 1):  # grow one token at a time: decode steps on the cache
        torch.testing.assert_close(engine.sync("d", ids[:n]), naive_loop_forward(engine.model, ids[:n])[-1], atol=1e-5, rtol=0)


@torch.no_grad()
def test_window_size_matters_when_only_b_counts():
    """W keys including itself: W=1 attends only to itself, so changing W changes the output."""
    ids = list(range(2, 14))
    outs = [forced_gate_engine(bias=-float("inf"), window=w).logits(ids) for w in (1, 2, 12)]
    assert not torch.allclose(outs[0], outs[1]) and not torch.allclose(outs[1], outs[2])
    naive = naive_loop_forward(forced_gate_engine(bias=-float("inf"), window=1).model, ids)
    torch.testing.assert_close(outs[0], naive, atol=1e-5, rtol=0)


@torch.no_grad()
def test_mixed_gate_and_three_loops_match_naive():
    engine = tiny_engine("iquestloopcoder", loop_num=3, loop_window_size=4)
    ids = [int(i) for i in torch.randint(0, 97, (11,), generator=torch.Generator().manual_seed(3))]
    torch.testing.assert_close(engine.logits(ids), naive_loop_forward(engine.model, ids), atol=1e-5, rtol=0)
