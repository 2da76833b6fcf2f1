"""The attention of a Loop model's loop >= 2 layer: two paged attentions mixed by a per-head gate.

For a query q of loop k >= 2 at position t (engine/models/loopcoder.py):

    A = attention(q, K1, V1)                 loop 1's pages of the layer, keys 0 .. t
    B = attention(q, K_k, V_k, window=W)     this loop's own pages, keys t-W+1 .. t
    g = sigmoid(q . w_gate[head] + b_gate[head])      one value per head and token
    out = g * A + (1 - g) * B

Reference: two `paged_attention_ref` calls and the gate in the model's dtype, exactly
what the model computed before this op existed.

Triton kernel (decode: one query row per sequence): one program per (sequence, KV head)
computes A and B for the KV head's n_rep query heads, the gate and the mix, in float32,
and writes the output once; a branch-B program reads only the window's pages. With
split-K, programs 0 .. S-1 of a (sequence, KV head) write partials of A, program S
computes B, and a merge kernel per (sequence, head) combines A's partials, adds the
gate and mixes. Prefill and prefill chunks take `prefill`'s fused kernel (both branches,
the gate and the mix per query tile).
"""

from __future__ import annotations

import torch

from .common import (
    LOG2E,
    DecodeLaunch,
    LayerCache,
    check_decode_args,
    check_loop_gate,
    dot_precision,
    output_for,
    rep_tile,
    split_plan,
    triton,
)
from .metadata import AttentionMetadata
from .reference import paged_attention_ref


def loop_gate(q: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """q: (T, Hq, D) rotated, weight (Hq, D), bias (Hq,) -> gate (T, Hq, 1), in q's dtype."""
    return torch.sigmoid((q * weight).sum(-1) + bias).unsqueeze(-1)


def loop_attention_ref(
    q: torch.Tensor,
    global_cache: LayerCache,
    local_cache: LayerCache,
    meta: AttentionMetadata,
    scale: float,
    window: int,
    gate_weight: torch.Tensor,
    gate_bias: torch.Tensor,
) -> torch.Tensor:
    """q: (T, Hq, D) -> (T, Hq, D)."""
    a = paged_attention_ref(q, global_cache[0], global_cache[1], meta, scale)
    b = paged_attention_ref(q, local_cache[0], local_cache[1], meta, scale, window)
    g = loop_gate(q, gate_weight, gate_bias).to(a.dtype)
    return g * a + (1 - g) * b


# ---------------------------------------------------------------------------------------
# Triton


if triton is not None:
    import triton.language as tl

    from .common import attend_range, loop_gate_rows, merge_splits, split_chunk, store_partial

    @triton.jit
    def _loop_decode_kernel(
        out, q, k1, v1, k2, v2, block_tables, positions, gate_w, gate_b, part_acc, part_ml, b_out,
        stride_qt, stride_qh, stride_ot, stride_oh, stride_block, stride_token, stride_head, stride_table,
        qk_scale, window, n_rep,
        BLOCK_SIZE: tl.constexpr, BLOCK_N: tl.constexpr, REP: tl.constexpr, D: tl.constexpr,
        SPLIT: tl.constexpr, PRECISION: tl.constexpr,
    ):
        seq, kv_head, split = tl.program_id(0), tl.program_id(1), tl.program_id(2)
        seq_len = tl.load(positions + seq).to(tl.int32) + 1  # the query sits at position seq_len - 1
        window_lo = tl.maximum(seq_len - window, 0)
        rep = tl.arange(0, REP)
        heads = kv_head * n_rep + rep  # (REP,) query heads of this KV head, padded
        rows_ok = rep < n_rep
        offs_d = tl.arange(0, D)
        qv = tl.load(q + seq * stride_qt + heads[:, None] * stride_qh + offs_d[None, :], mask=rows_ok[:, None], other=0.0)
        table = block_tables + seq * stride_table
        head_offset = kv_head * stride_head
        if SPLIT:
            num_splits = tl.num_programs(2) - 1  # the last program of the axis computes B
            num_heads = tl.num_programs(1) * n_rep
            if split == num_splits:
                acc, m, l = attend_range(
                    qv, k2, v2, table, head_offset, window_lo, seq_len,
                    stride_block, stride_token, qk_scale, BLOCK_SIZE, BLOCK_N, REP, D, PRECISION,
                )
                slot = seq * num_heads + heads
                tl.store(b_out + slot[:, None] * D + offs_d[None, :], acc / l[:, None], mask=rows_ok[:, None])
            else:
                chunk = split_chunk(seq_len, num_splits, BLOCK_N)
                lo = split * chunk
                acc, m, l = attend_range(
                    qv, k1, v1, table, head_offset, lo, tl.minimum(seq_len, lo + chunk),
                    stride_block, stride_token, qk_scale, BLOCK_SIZE, BLOCK_N, REP, D, PRECISION,
                )
                store_partial(part_acc, part_ml, acc, m, l, heads, rows_ok, seq, split, num_heads, num_splits, D)
        else:
            acc_a, m_a, l_a = attend_range(
                qv, k1, v1, table, head_offset, seq_len * 0, seq_len,
                stride_block, stride_token, qk_scale, BLOCK_SIZE, BLOCK_N, REP, D, PRECISION,
            )
            acc_b, m_b, l_b = attend_range(
                qv, k2, v2, table, head_offset, window_lo, seq_len,
                stride_block, stride_token, qk_scale, BLOCK_SIZE, BLOCK_N, REP, D, PRECISION,
            )
            g = loop_gate_rows(qv, gate_w, gate_b, heads, rows_ok, offs_d, D)[:, None]  # (REP, 1)
            o = g * (acc_a / l_a[:, None]) + (1 - g) * (acc_b / l_b[:, None])
            o_ptrs = out + seq * stride_ot + heads[:, None] * stride_oh + offs_d[None, :]
            tl.store(o_ptrs, o.to(out.dtype.element_ty), mask=rows_ok[:, None])

    @triton.jit
    def _loop_merge_kernel(
        out, q, gate_w, gate_b, part_acc, part_ml, b_out,
        stride_qt, stride_qh, stride_ot, stride_oh, num_splits,
        SPLITS: tl.constexpr, D: tl.constexpr,
    ):
        seq, head = tl.program_id(0), tl.program_id(1)
        row = seq * tl.num_programs(1) + head
        offs_d = tl.arange(0, D)
        a = merge_splits(part_acc, part_ml, row, num_splits, SPLITS, D)
        b = tl.load(b_out + row * D + offs_d)
        qv = tl.load(q + seq * stride_qt + head * stride_qh + offs_d).to(tl.float32)
        w = tl.load(gate_w + head * D + offs_d).to(tl.float32)
        g = tl.sigmoid(tl.sum(qv * w, 0) + tl.load(gate_b + head).to(tl.float32))
        o = g * a + (1 - g) * b
        tl.store(out + seq * stride_ot + head * stride_oh + offs_d, o.to(out.dtype.element_ty))


def loop_decode_attention_triton(
    q: torch.Tensor,
    global_cache: LayerCache,
    local_cache: LayerCache,
    block_tables: torch.Tensor,
    positions: torch.Tensor,
    max_context: int,
    scale: float,
    window: int,
    gate_weight: torch.Tensor,
    gate_bias: torch.Tensor,
    *,
    launch: DecodeLaunch = DecodeLaunch(),
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Fused loop decode attention in Triton: q (B, Hq, D), one row per sequence -> (B, Hq, D).

    Both caches share the block tables (loop k's pages sit at the same positions as loop
    1's); the rest as in `paged_decode_attention_triton`.
    """
    caches = (*global_cache, *local_cache)
    check_decode_args(q, caches, block_tables, positions)
    batch, num_heads, head_dim = q.shape
    block_size, num_kv_heads = global_cache[0].shape[1:3]
    check_loop_gate(q, gate_weight, gate_bias)
    n_rep = num_heads // num_kv_heads
    splits = split_plan(batch, num_kv_heads, max_context, q.device, launch)
    out = output_for(q, out, "Triton loop attention")
    part_acc = part_ml = b_out = out  # not read without splits
    if splits > 1:
        part_acc = torch.empty(batch, num_heads, splits, head_dim, dtype=torch.float32, device=q.device)
        part_ml = torch.empty(batch, num_heads, splits, 2, dtype=torch.float32, device=q.device)
        b_out = torch.empty(batch, num_heads, head_dim, dtype=torch.float32, device=q.device)
    k_cache = global_cache[0]
    _loop_decode_kernel[(batch, num_kv_heads, splits + 1 if splits > 1 else 1)](
        out, q, *caches, block_tables, positions, gate_weight, gate_bias, part_acc, part_ml, b_out,
        q.stride(0), q.stride(1), out.stride(0), out.stride(1),
        k_cache.stride(0), k_cache.stride(1), k_cache.stride(2), block_tables.stride(0),
        scale * LOG2E, window, n_rep,
        BLOCK_SIZE=block_size, BLOCK_N=launch.block_n, REP=rep_tile(n_rep), D=head_dim,
        SPLIT=splits > 1, PRECISION=dot_precision(q.dtype),
        num_warps=launch.num_warps, num_stages=launch.num_stages,
    )
    if splits > 1:
        _loop_merge_kernel[(batch, num_heads)](
            out, q, gate_weight, gate_bias, part_acc, part_ml, b_out,
            q.stride(0), q.stride(1), out.stride(0), out.stride(1), splits,
            SPLITS=triton.next_power_of_2(splits), D=head_dim,
        )
    return out
