"""kernels/decoder_cpu.py: the C decode step of every layer against its torch reference
(the other kernels' references, step by step), on random GGUF layers: joined and separate
projections, K-quant mixes, biases, Qwen3's q/k norms, a sliding window, float32 and
bfloat16 pages, and sequences at different positions on scattered blocks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from loopcoder.kernels import decoder_cpu as DC
from loopcoder.kernels import gguf_linear as G
from loopcoder.kernels.attention.metadata import AttentionMetadata

from .gguf_helpers import quantize

pytestmark = pytest.mark.skipif(DC._kernel is None, reason=f"the C step is not built: {DC.decoder_kernel_status()}")

SHAPE = DC.DecoderShape(hidden=256, heads=4, kv_heads=2, head_dim=64, intermediate=512, eps=1e-5)
BLOCK_SIZE = 16


def projection(rng, n: int, k: int, name: str, bias: bool = False) -> DC.Projection:
    w = (rng.standard_normal((n, k)) * k**-0.5).astype(np.float32)
    b = torch.from_numpy(rng.standard_normal(n).astype(np.float32) * 0.1) if bias else None
    return DC.Projection(G.GGUFWeight(torch.from_numpy(quantize(w, name)), G.GGUF_TYPES[name], k), b)


def layers(seed: int = 0, *, joined: bool = True, types=("Q4_1", "Q8_0"), bias: bool = False, qk_norm: bool = False,
           window: int | None = None, count: int = 2) -> list[DC.DecoderLayerWeights]:
    rng = np.random.default_rng(seed)
    s = SHAPE
    q, kv = s.heads * s.head_dim, s.kv_heads * s.head_dim
    out = []
    for i in range(count):
        a, b = types[i % len(types)], types[(i + 1) % len(types)]
        if joined:
            qkv = (projection(rng, q + 2 * kv, s.hidden, a, bias),)
            gate_up = (projection(rng, 2 * s.intermediate, s.hidden, b),)
        else:  # a K-quant mix stores v (and up) in another type than q and k
            qkv = (projection(rng, q, s.hidden, a, bias), projection(rng, kv, s.hidden, a, bias),
                   projection(rng, kv, s.hidden, b, bias))
            gate_up = (projection(rng, s.intermediate, s.hidden, a), projection(rng, s.intermediate, s.hidden, b))
        norm = (lambda n: torch.from_numpy(1 + 0.1 * rng.standard_normal(n).astype(np.float32)))
        out.append(DC.DecoderLayerWeights(
            input_norm=norm(s.hidden), post_norm=norm(s.hidden), qkv=qkv, o=projection(rng, s.hidden, q, b),
            gate_up=gate_up, down=projection(rng, s.hidden, s.intermediate, a),
            q_norm=norm(s.head_dim) if qk_norm else None, k_norm=norm(s.head_dim) if qk_norm else None, window=window))
    return out


def rope_tables(length: int) -> tuple[torch.Tensor, torch.Tensor]:
    inv = 1.0 / 10000 ** (torch.arange(0, SHAPE.head_dim, 2).float() / SHAPE.head_dim)
    freqs = torch.outer(torch.arange(length).float(), inv)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def setup_step(seed: int, lengths: list[int], dtype: torch.dtype, count: int = 2):
    """Caches holding `lengths[b] - 1` earlier tokens of each sequence (random K/V) on
    scattered blocks, and the metadata of one new token each."""
    g = torch.Generator().manual_seed(seed)
    blocks = sum((n + BLOCK_SIZE - 1) // BLOCK_SIZE for n in lengths) + 3
    order = torch.randperm(blocks, generator=g).tolist()
    tables = []
    for n in lengths:
        need = (n + BLOCK_SIZE - 1) // BLOCK_SIZE
        tables.append(order[:need])
        order = order[need:]
    shape = (blocks, BLOCK_SIZE, SHAPE.kv_heads, SHAPE.head_dim)
    caches = [(torch.randn(shape, generator=g).to(dtype), torch.randn(shape, generator=g).to(dtype)) for _ in range(count)]
    meta = AttentionMetadata.build(tables, [n - 1 for n in lengths], [1] * len(lengths), BLOCK_SIZE)
    h = torch.randn(len(lengths), SHAPE.hidden, generator=g)
    return h, meta, caches


def run_both(weights, lengths, dtype, seed=0):
    h, meta, caches = setup_step(seed, lengths, dtype, len(weights))
    cos, sin = rope_tables(max(lengths) + 8)
    ref_caches = [(k.clone(), v.clone()) for k, v in caches]
    decoder = DC.CpuDecoder(SHAPE, weights)
    assert DC.decoder_step_blocker(decoder, h, meta, caches, cos) is None
    got = decoder.run(h, meta, caches, cos, sin)
    want = DC.decoder_step_ref(SHAPE, weights, h, meta, ref_caches, cos, sin)
    return got - h, want - h, caches, ref_caches, meta  # what the layers added: the residual would hide errors


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["f32", "bf16"])
@pytest.mark.parametrize("variant", ["joined", "separate-kquant-mix", "bias-qknorm", "window"])
def test_the_step_computes_what_the_references_compute(variant, dtype):
    kwargs = {"joined": {}, "separate-kquant-mix": {"joined": False, "types": ("Q4_K", "Q6_K", "Q5_K")},
              "bias-qknorm": {"bias": True, "qk_norm": True, "types": ("Q5_0", "Q4_0")},
              "window": {"window": 40, "types": ("Q5_1", "Q8_0")}}[variant]
    weights = layers(1, **kwargs)
    got, want, caches, ref_caches, meta = run_both(weights, [1, 37, 300], dtype)
    # The C step quantizes activations to int8 per 32 for its dot products (as llama.cpp); the
    # reference multiplies floats: about 1.3% of what the layers add (a wrong window: 16%).
    assert rel(got, want) < 0.03, rel(got, want)
    for (k, v), (rk, rv) in zip(caches, ref_caches):  # the new K/V rows are the reference's
        slots = meta.slot_mapping
        assert rel(k.flatten(0, 1)[slots], rk.flatten(0, 1)[slots]) < 0.03
        assert rel(v.flatten(0, 1)[slots], rv.flatten(0, 1)[slots]) < 0.03


def test_only_the_new_slots_are_written():
    weights = layers(2)
    h, meta, caches = setup_step(3, [5, 70], torch.float32, len(weights))
    before = [(k.clone(), v.clone()) for k, v in caches]
    cos, sin = rope_tables(80)
    DC.CpuDecoder(SHAPE, weights).run(h, meta, caches, cos, sin)
    slots = set(meta.slot_mapping.tolist())
    for (k, v), (k0, v0) in zip(caches, before):
        for new, old in ((k, k0), (v, v0)):
            written = (new.flatten(0, 1) != old.flatten(0, 1)).any(-1).any(-1).nonzero().flatten().tolist()
            assert set(written) == slots


def test_rows_are_independent_of_their_batch():
    """A sequence's row is the same alone or beside others (the kernels are batch-invariant)."""
    weights = layers(4)
    h, meta, caches = setup_step(5, [9, 130], torch.float32, len(weights))
    cos, sin = rope_tables(140)
    both = DC.CpuDecoder(SHAPE, weights).run(h, meta, [(k.clone(), v.clone()) for k, v in caches], cos, sin)
    one_meta = AttentionMetadata.build([meta.block_tables_host[1]], [129], [1], BLOCK_SIZE)
    alone = DC.CpuDecoder(SHAPE, weights).run(h[1:], one_meta, caches, cos, sin)
    torch.testing.assert_close(alone[0], both[1], rtol=0, atol=0)


def test_a_step_past_its_blocks_or_the_rope_table_is_refused():
    weights = layers(6)
    h, meta, caches = setup_step(7, [20], torch.float32, len(weights))
    decoder = DC.CpuDecoder(SHAPE, weights)
    cos, sin = rope_tables(10)  # shorter than position 19
    assert "RoPE table" in DC.decoder_step_blocker(decoder, h, meta, caches, cos)
    with pytest.raises(ValueError, match="RoPE table"):
        decoder.run(h, meta, caches, cos, sin)
    cos, sin = rope_tables(64)
    bad = AttentionMetadata.build([[caches[0][0].shape[0] + 5, 0]], [19], [1], BLOCK_SIZE)
    with pytest.raises(ValueError, match="block"):
        decoder.run(h, bad, caches, cos, sin)


def test_layers_that_do_not_fit_the_shape_are_refused():
    weights = layers(8)
    wrong = DC.DecoderShape(hidden=256, heads=2, kv_heads=2, head_dim=64, intermediate=512, eps=1e-5)
    h, meta, caches = setup_step(9, [4], torch.float32, len(weights))
    cos, sin = rope_tables(16)
    with pytest.raises(ValueError, match="layer 0 does not fit"):
        DC.CpuDecoder(wrong, weights).run(h, meta, caches, cos, sin)


def test_a_prefill_step_is_not_taken():
    weights = layers(10)
    h, _, caches = setup_step(11, [8], torch.float32, len(weights))
    meta = AttentionMetadata.build([[0]], [0], [3], BLOCK_SIZE)
    cos, _ = rope_tables(16)
    assert "not a decode step" in DC.decoder_step_blocker(DC.CpuDecoder(SHAPE, weights), torch.zeros(3, 256), meta,
                                                          caches, cos)


def test_caches_are_checked_once_per_list_and_bad_ones_refused():
    weights = layers(12)
    h, meta, caches = setup_step(13, [6], torch.float32, len(weights))
    cos, sin = rope_tables(16)
    decoder = DC.CpuDecoder(SHAPE, weights)
    decoder.run(h, meta, caches, cos, sin)
    pointers = decoder._pointers
    decoder.run(h, meta, caches, cos, sin)
    assert decoder._pointers is pointers  # the same list: no second check, no new table
    half = [(k.half(), v.half()) for k, v in caches]
    assert "float32 or bfloat16" in DC.decoder_step_blocker(decoder, h, meta, half, cos)
    with pytest.raises(ValueError, match="cannot write these caches"):
        decoder.run(h, meta, half, cos, sin)
