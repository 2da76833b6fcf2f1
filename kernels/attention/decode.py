"""Paged decode attention in Triton: one query row per sequence, over its paged K/V,
optionally restricted to a sliding window. The torch reference is `reference`; the
dispatcher (`kernels.attention.paged_attention`) sends decode batches here, prefill and
prefill chunks (several query rows per sequence) to `prefill`. Loop >= 2 of a Loop model
attends twice over two caches: `loop` fuses that pair.

One program per (sequence, KV head, split) walks the sequence's keys BLOCK_N at a time,
reading each key's page through the block table, so K/V are read once per KV head for
all of its n_rep query heads. The query heads of a KV head are the rows of one (REP, D)
tile, padded to 16 rows for `tl.dot`::

    block_tables[b]:  [ 7 | 2 | 9 | ... ]        page j of sequence b is cache block table[j]
    k_cache[7]:       (block_size, Hkv, D)        key of token pos: k_cache[table[pos // bs], pos % bs, kv_head]
    program (b, g, s): q rows g*n_rep .. g*n_rep+n_rep-1  x  keys lo+s*chunk .. lo+(s+1)*chunk-1

With a window only pages inside it are read (lo = t-W+1). Split-K (flash-decoding):
long contexts are cut into chunks so that small batches still fill the GPU; each split
writes an unnormalised partial (acc, max, sum) and a second kernel merges them. The split
count is a launch parameter and each sequence cuts its own key range into that many
chunks on the device, so one launch (one captured CUDA graph) fits every context length.
"""

from __future__ import annotations

import torch

from .common import LOG2E, DecodeLaunch, check_decode_args, dot_precision, output_for, rep_tile, split_plan, triton

if triton is not None:
    import triton.language as tl

    from .common import attend_range, merge_splits, split_chunk, store_partial

    @triton.jit
    def _paged_decode_kernel(
        out, q, k_cache, v_cache, block_tables, positions, part_acc, part_ml,
        stride_qt, stride_qh, stride_ot, stride_oh, stride_block, stride_token, stride_head, stride_table,
        qk_scale, window, n_rep,
        BLOCK_SIZE: tl.constexpr, BLOCK_N: tl.constexpr, REP: tl.constexpr, D: tl.constexpr,
        WINDOWED: tl.constexpr, SPLIT: tl.constexpr, PRECISION: tl.constexpr,
    ):
        seq, kv_head, split = tl.program_id(0), tl.program_id(1), tl.program_id(2)
        seq_len = tl.load(positions + seq).to(tl.int32) + 1  # the query sits at position seq_len - 1
        lo = seq_len * 0
        if WINDOWED:
            lo = tl.maximum(seq_len - window, 0)
        hi = seq_len
        if SPLIT:
            chunk = split_chunk(hi - lo, tl.num_programs(2), BLOCK_N)
            lo = lo + split * chunk
            hi = tl.minimum(hi, lo + chunk)
        rep = tl.arange(0, REP)
        heads = kv_head * n_rep + rep  # (REP,) query heads of this KV head, padded
        rows_ok = rep < n_rep
        offs_d = tl.arange(0, D)
        qv = tl.load(q + seq * stride_qt + heads[:, None] * stride_qh + offs_d[None, :], mask=rows_ok[:, None], other=0.0)
        acc, m, l = attend_range(
            qv, k_cache, v_cache, block_tables + seq * stride_table, kv_head * stride_head, lo, hi,
            stride_block, stride_token, qk_scale, BLOCK_SIZE, BLOCK_N, REP, D, PRECISION,
        )
        if SPLIT:
            num_heads = tl.num_programs(1) * n_rep
            store_partial(part_acc, part_ml, acc, m, l, heads, rows_ok, seq, split, num_heads, tl.num_programs(2), D)
        else:
            o = acc / l[:, None]
            o_ptrs = out + seq * stride_ot + heads[:, None] * stride_oh + offs_d[None, :]
            tl.store(o_ptrs, o.to(out.dtype.element_ty), mask=rows_ok[:, None])

    @triton.jit
    def _merge_kernel(out, part_acc, part_ml, stride_ot, stride_oh, num_splits, SPLITS: tl.constexpr, D: tl.constexpr):
        seq, head = tl.program_id(0), tl.program_id(1)
        o = merge_splits(part_acc, part_ml, seq * tl.num_programs(1) + head, num_splits, SPLITS, D)
        tl.store(out + seq * stride_ot + head * stride_oh + tl.arange(0, D), o.to(out.dtype.element_ty))


def paged_decode_attention_triton(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_tables: torch.Tensor,
    positions: torch.Tensor,
    max_context: int,
    scale: float,
    window: int | None = None,
    *,
    launch: DecodeLaunch = DecodeLaunch(),
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Decode attention in Triton: q (B, Hq, D), one query row per sequence -> (B, Hq, D).

    Row b is sequence b's query at positions[b], so it sees its keys 0 .. positions[b]
    (the last W with a window); block_tables (B, max_blocks) int64 as in AttentionMetadata;
    max_context (a host int) bounds positions + 1 and sizes the split-K plan.
    """
    check_decode_args(q, (k_cache, v_cache), block_tables, positions)
    batch, num_heads, head_dim = q.shape
    block_size, num_kv_heads = k_cache.shape[1:3]
    n_rep = num_heads // num_kv_heads
    span = max_context if window is None else min(window, max_context)
    splits = split_plan(batch, num_kv_heads, span, q.device, launch)
    out = output_for(q, out, "Triton decode attention")
    part_acc = part_ml = out  # not read without splits
    if splits > 1:
        part_acc = torch.empty(batch, num_heads, splits, head_dim, dtype=torch.float32, device=q.device)
        part_ml = torch.empty(batch, num_heads, splits, 2, dtype=torch.float32, device=q.device)
    _paged_decode_kernel[(batch, num_kv_heads, splits)](
        out, q, k_cache, v_cache, block_tables, positions, part_acc, part_ml,
        q.stride(0), q.stride(1), out.stride(0), out.stride(1),
        k_cache.stride(0), k_cache.stride(1), k_cache.stride(2), block_tables.stride(0),
        scale * LOG2E, window or 0, n_rep,
        BLOCK_SIZE=block_size, BLOCK_N=launch.block_n, REP=rep_tile(n_rep), D=head_dim,
        WINDOWED=window is not None, SPLIT=splits > 1, PRECISION=dot_precision(q.dtype),
        num_warps=launch.num_warps, num_stages=launch.num_stages,
    )
    if splits > 1:
        _merge_kernel[(batch, num_heads)](
            out, part_acc, part_ml, out.stride(0), out.stride(1), splits,
            SPLITS=triton.next_power_of_2(splits), D=head_dim,
        )
    return out
