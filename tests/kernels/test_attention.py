"""paged_attention against a naive per-query loop, over odd shapes, block sizes and windows."""

import math
import random

import pytest
import torch

from loopcoder.engine.attention_metadata import AttentionMetadata
from loopcoder.kernels.attention import paged_attention
from loopcoder.kernels.kv_store import store_kv

TOLERANCE = {torch.float32: 1e-5, torch.bfloat16: 2e-2}


def naive(q, k, v, q_positions, window):
    """q: (n_q, Hq, D) at absolute q_positions; k, v: (n_k, Hkv, D) at positions 0..n_k-1."""
    n_rep = q.shape[1] // k.shape[1]
    out = torch.zeros_like(q, dtype=torch.float32)
    for i, t in enumerate(q_positions):
        lo = 0 if window is None else max(0, t - window + 1)
        for h in range(q.shape[1]):
            keys = k[lo : t + 1, h // n_rep].float()
            scores = keys @ q[i, h].float() / math.sqrt(q.shape[2])
            out[i, h] = torch.softmax(scores, 0) @ v[lo : t + 1, h // n_rep].float()
    return out


def scattered_cache(ks, vs, block_size, num_blocks, dtype, order=None):
    """Write each sequence's full K/V into randomly chosen blocks (or blocks taken from `order`)."""
    hkv, d = ks[0].shape[1:]
    k_cache = torch.zeros(num_blocks, block_size, hkv, d, dtype=dtype)
    v_cache = torch.zeros_like(k_cache)
    free = list(range(num_blocks))
    random.Random(0).shuffle(free)
    if order is not None:
        free = list(reversed(order))
    tables = []
    for k, v in zip(ks, vs):
        n = (k.shape[0] + block_size - 1) // block_size
        table = [free.pop() for _ in range(n)]
        tables.append(table)
        meta = AttentionMetadata.build([table], [0], [k.shape[0]], block_size)
        store_kv(k, v, k_cache, v_cache, meta.slot_mapping)
    return k_cache, v_cache, tables


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("block_size", [1, 3, 16])
@pytest.mark.parametrize("window", [None, 1, 5])
@pytest.mark.parametrize("heads", [(4, 4), (6, 2), (3, 1)])
def test_paged_matches_naive(dtype, block_size, window, heads):
    torch.manual_seed(0)
    hq, hkv, d = *heads, 8
    ctx_lens, q_lens = [13, 1, 7], [5, 1, 7]  # a chunk on a prefix, a decode, a fresh prefill
    ks = [torch.randn(n, hkv, d, dtype=dtype) for n in ctx_lens]
    vs = [torch.randn(n, hkv, d, dtype=dtype) for n in ctx_lens]
    qs = [torch.randn(n, hq, d, dtype=dtype) for n in q_lens]
    k_cache, v_cache, tables = scattered_cache(ks, vs, block_size, 64, dtype)
    starts = [c - q for c, q in zip(ctx_lens, q_lens)]
    meta = AttentionMetadata.build(tables, starts, q_lens, block_size)
    out = paged_attention(torch.cat(qs), k_cache, v_cache, meta, d**-0.5, window)
    expected = torch.cat(
        [naive(q, k, v, range(s, s + q.shape[0]), window) for q, k, v, s in zip(qs, ks, vs, starts)]
    )
    torch.testing.assert_close(out.float(), expected, atol=TOLERANCE[dtype], rtol=TOLERANCE[dtype])


def test_window_reads_exactly_w_keys_including_self():
    """With values one-hot by position, the output weights show which keys were read."""
    n, window = 10, 3
    k = torch.zeros(n, 1, n)  # all scores equal: uniform weights over visible keys
    v = torch.eye(n).unsqueeze(1)  # value of key j is e_j
    q = torch.zeros(n, 1, n)
    k_cache, v_cache, tables = scattered_cache([k], [v], 4, 8, torch.float32)
    meta = AttentionMetadata.build(tables, [0], [n], 4)
    out = paged_attention(q, k_cache, v_cache, meta, 1.0, window)[:, 0]  # (n, n)
    for t in range(n):
        visible = [j for j in range(n) if out[t, j] > 0]
        assert visible == list(range(max(0, t - window + 1), t + 1))


def test_bad_shapes_raise():
    meta = AttentionMetadata.build([[0]], [0], [2], 4)
    k_cache = torch.zeros(1, 4, 2, 8)
    with pytest.raises(ValueError, match="head layout"):
        paged_attention(torch.zeros(2, 3, 8), k_cache, k_cache, meta, 1.0)
    with pytest.raises(ValueError, match="window"):
        paged_attention(torch.zeros(2, 4, 8), k_cache, k_cache, meta, 1.0, window=0)
    with pytest.raises(ValueError, match="store_kv"):
        store_kv(torch.zeros(3, 2, 8), torch.zeros(3, 2, 8), k_cache, k_cache, meta.slot_mapping)


@pytest.mark.parametrize("order", [[0, 1, 2, 3, 4], [9, 2, 3, 4, 5], [1, 2, 7, 3, 4], [4, 3, 2, 1, 0]])
@pytest.mark.parametrize("window", [None, 6])
def test_contiguous_and_mixed_block_tables(order, window):
    """Consecutive pages are read as a slice, others gathered: both give the same answer."""
    torch.manual_seed(1)
    k, v, q = torch.randn(18, 2, 8), torch.randn(18, 2, 8), torch.randn(3, 4, 8)
    k_cache, v_cache, tables = scattered_cache([k], [v], 4, 12, torch.float32, order=order)
    assert tables == [order]
    meta = AttentionMetadata.build(tables, [15], [3], 4)
    out = paged_attention(q, k_cache, v_cache, meta, 8**-0.5, window)
    torch.testing.assert_close(out, naive(q, k, v, range(15, 18), window), atol=1e-5, rtol=1e-5)
