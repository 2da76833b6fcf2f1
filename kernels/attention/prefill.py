"""Prefill and prefill-chunk ("extend") attention over paged K/V in Triton, plain and gated Loop.

Sequence b's n_q query rows sit at positions context_lens[b] - n_q .. context_lens[b] - 1
and each attends to the sequence's cached keys 0 .. its own position (their K/V are
already in the pages), or to the last W of them with a window. The torch references are
`reference.paged_attention_ref` and `loop.loop_attention_ref`; the dispatchers
(`kernels.attention`) send multi-row batches here. How a prefill is cut (the launch, the
key splits, the tile map) is `prefill_plan`'s.

Tiles. One program per (query tile, KV head). A tile is up to `queries` consecutive query
rows of one sequence times the n_rep query heads of the KV head, folded into the BLOCK_M
rows of one matrix (row r: query r // n_rep, head kv_head * n_rep + r % n_rep)::

    queries = BLOCK_M // n_rep            n_rep 5, BLOCK_M 128: 25 queries x 5 heads = 125 rows (3 padding)
    q rows  (t0, h0) (t0, h1) .. (t0, h4) (t1, h0) ..     each token's 5 heads are adjacent in q

so K/V are read once per KV head for all of its query heads. Against one program per
query head this reads the same K/V bytes for a long prefill, but a short chunk or a
single-row sequence in a mixed batch fills n_rep rows of the tile instead of one, and a
tile spans n_rep times fewer positions, so the causal diagonal and a window's band cover
fewer key blocks.

The host cuts each sequence's rows into tiles and sends the map as one int32 tensor of
(sequence, first query row, number of queries, position of the first query) per tile,
longest key span first so that the heaviest tiles start first. Program id -> (tile,
KV head) = divmod(pid, Hkv).

Key loop of a tile whose queries sit at p0 .. p1 (keys read BLOCK_N at a time through
the block table, like the decode kernel)::

    keys  lo ......... full_lo ............. full_hi ........ p1
          |  masked    |  unmasked            |  masked        |
          (window edge)  (visible to every row) (causal diagonal)

lo = 0, or p0 - W + 1 with a window (nothing below it is read); full_lo..full_hi holds
whole blocks visible to every row of the tile (no mask is computed there); the two
masked stretches are at most a block plus the window edge, and the diagonal. Online
softmax in float32 with exp2 of log2-scaled scores. The Loop kernel runs two such loops
per tile, A over loop 1's pages (causal) and B over the loop's own pages (window only),
then the gate sigmoid(q . w[head] + b[head]) and g * A + (1 - g) * B, writing once.
"""

from __future__ import annotations

import torch

from .common import LOG2E, LayerCache, check_loop_gate, decode_blocker, dot_precision, output_for, triton
from .metadata import AttentionMetadata
from .prefill_plan import PrefillLaunch, plan_tiles


# ---------------------------------------------------------------------------------------
# Triton


if triton is not None:
    import triton.language as tl

    from .common import loop_gate_rows

    @triton.jit
    def _key_blocks(
        acc, m, l, q, q_pos, k_cache, v_cache, table, head_offset, start, stop, hi, window,
        stride_block, stride_token, qk_scale,
        BLOCK_SIZE: tl.constexpr, BLOCK_N: tl.constexpr, D: tl.constexpr,
        MASKED: tl.constexpr, WINDOWED: tl.constexpr, PRECISION: tl.constexpr,
    ):
        """Online softmax of the (BLOCK_M, D) tile q over keys start .. stop-1, BLOCK_N at a time.

        Unmasked: every key of the range is visible to every row. Masked: key pos is seen by
        the row at q_pos iff pos < hi, pos <= q_pos and (windowed) pos > q_pos - window; a row
        that has seen no key yet keeps m = -inf, l = 0, acc = 0.
        """
        offs_n = tl.arange(0, BLOCK_N)
        offs_d = tl.arange(0, D)
        for block_start in range(start, stop, BLOCK_N):
            pos = block_start + offs_n  # (BLOCK_N,)
            if MASKED:
                in_range = pos < hi
                page = tl.load(table + pos // BLOCK_SIZE, mask=in_range, other=0)  # int64 block ids
            else:
                page = tl.load(table + pos // BLOCK_SIZE)
            kv_ptrs = (page * stride_block + (pos % BLOCK_SIZE) * stride_token + head_offset)[:, None] + offs_d[None, :]
            if MASKED:
                k = tl.load(k_cache + kv_ptrs, mask=in_range[:, None], other=0.0)  # (BLOCK_N, D)
            else:
                k = tl.load(k_cache + kv_ptrs)
            s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale  # (BLOCK_M, BLOCK_N)
            if MASKED:
                visible = in_range[None, :] & (pos[None, :] <= q_pos[:, None])
                if WINDOWED:
                    visible = visible & (pos[None, :] > q_pos[:, None] - window)
                s = tl.where(visible, s, float("-inf"))
            m_new = tl.maximum(m, tl.max(s, 1))
            m_ref = m_new
            if MASKED:
                m_ref = tl.where(m_new == float("-inf"), 0.0, m_new)  # no key yet: exp2(-inf - 0) = 0, not NaN
            alpha = tl.exp2(m - m_ref)
            p = tl.exp2(s - m_ref[:, None])
            l = l * alpha + tl.sum(p, 1)
            if MASKED:
                v = tl.load(v_cache + kv_ptrs, mask=in_range[:, None], other=0.0)
            else:
                v = tl.load(v_cache + kv_ptrs)
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
            m = m_new
        return acc, m, l

    @triton.jit
    def _attend_tile(
        q, q_pos, k_cache, v_cache, table, head_offset, first_pos, hi, window,
        stride_block, stride_token, qk_scale, split, num_splits,
        BLOCK_M: tl.constexpr, BLOCK_SIZE: tl.constexpr, BLOCK_N: tl.constexpr, D: tl.constexpr,
        WINDOWED: tl.constexpr, PRECISION: tl.constexpr, SPLIT: tl.constexpr,
    ):
        """acc (BLOCK_M, D) unnormalised, m and l (BLOCK_M,) of the tile's queries at first_pos .. hi-1.

        SPLIT: only the split-th of num_splits chunks of the tile's key range (whole BLOCK_N
        blocks each, counted from its first key); the three stretches are clipped to it.
        """
        m = tl.full([BLOCK_M], float("-inf"), tl.float32)
        l = tl.zeros([BLOCK_M], tl.float32)
        acc = tl.zeros([BLOCK_M, D], tl.float32)
        lo = first_pos * 0
        full_lo = lo
        if WINDOWED:
            lo = tl.maximum(first_pos - window + 1, 0)  # the first query's window: nothing below is read
            full_lo = tl.maximum(hi - window, lo)  # the last query's window starts here
        full_lo = lo + tl.cdiv(full_lo - lo, BLOCK_N) * BLOCK_N  # whole blocks counted from lo
        full_hi = full_lo + tl.maximum(first_pos + 1 - full_lo, 0) // BLOCK_N * BLOCK_N  # keys <= first_pos
        stop = hi
        if SPLIT:
            chunk = tl.cdiv(tl.cdiv(tl.maximum(hi - lo, 0), num_splits), BLOCK_N) * BLOCK_N
            lo = lo + split * chunk
            stop = tl.minimum(hi, lo + chunk)
            full_lo = tl.minimum(tl.maximum(full_lo, lo), stop)  # still whole blocks from the chunk's start
            full_hi = tl.minimum(tl.maximum(full_hi, full_lo), stop)
            full_hi = full_lo + (full_hi - full_lo) // BLOCK_N * BLOCK_N
        # A masked stretch may run past its end only beyond hi, where the mask drops the keys.
        acc, m, l = _key_blocks(acc, m, l, q, q_pos, k_cache, v_cache, table, head_offset, lo, full_lo, hi, window,
                                stride_block, stride_token, qk_scale, BLOCK_SIZE, BLOCK_N, D, True, WINDOWED, PRECISION)
        acc, m, l = _key_blocks(acc, m, l, q, q_pos, k_cache, v_cache, table, head_offset, full_lo, full_hi, hi,
                                window, stride_block, stride_token, qk_scale, BLOCK_SIZE, BLOCK_N, D, False, WINDOWED,
                                PRECISION)
        acc, m, l = _key_blocks(acc, m, l, q, q_pos, k_cache, v_cache, table, head_offset, full_hi, stop, hi, window,
                                stride_block, stride_token, qk_scale, BLOCK_SIZE, BLOCK_N, D, True, WINDOWED, PRECISION)
        return acc, m, l

    @triton.jit
    def _store_split(part_acc, part_ml, acc, m, l, tokens, heads, rows_ok, split, num_tokens, num_heads,
                     D: tl.constexpr):
        """One split's unnormalised (acc, m, l) of the tile's rows into part_acc (S, T, Hq, D), part_ml (S, T, Hq, 2)."""
        slot = (split * num_tokens + tokens) * num_heads + heads  # (BLOCK_M,)
        tl.store(part_acc + slot[:, None] * D + tl.arange(0, D)[None, :], acc, mask=rows_ok[:, None])
        tl.store(part_ml + slot * 2, m, mask=rows_ok)
        tl.store(part_ml + slot * 2 + 1, l, mask=rows_ok)

    @triton.jit
    def _merged(part_acc, part_ml, token, head, num_splits, num_tokens, num_heads, SPLITS: tl.constexpr,
                D: tl.constexpr):
        """The normalised (D,) float32 attention of one (token, head) from its splits' partials."""
        split = tl.arange(0, SPLITS)
        used = split < num_splits
        slot = (split * num_tokens + token) * num_heads + head
        m = tl.load(part_ml + slot * 2, mask=used, other=float("-inf"))
        l = tl.load(part_ml + slot * 2 + 1, mask=used, other=0.0)
        weight = tl.where(m > float("-inf"), tl.exp2(m - tl.max(m, 0)), 0.0)  # empty splits weigh 0
        acc = tl.load(part_acc + slot[:, None] * D + tl.arange(0, D)[None, :], mask=used[:, None], other=0.0)
        return tl.sum(acc * weight[:, None], 0) / tl.sum(l * weight, 0)

    @triton.jit
    def _prefill_merge_kernel(out, part_acc, part_ml, stride_ot, stride_oh, num_splits,
                              SPLITS: tl.constexpr, D: tl.constexpr):
        token, head = tl.program_id(0), tl.program_id(1)
        o = _merged(part_acc, part_ml, token, head, num_splits, tl.num_programs(0), tl.num_programs(1), SPLITS, D)
        tl.store(out + token * stride_ot + head * stride_oh + tl.arange(0, D), o.to(out.dtype.element_ty))

    @triton.jit
    def _loop_prefill_merge_kernel(out, q, gate_w, gate_b, part_acc, part_ml, b_out, stride_qt, stride_qh,
                                   stride_ot, stride_oh, num_splits, SPLITS: tl.constexpr, D: tl.constexpr):
        token, head = tl.program_id(0), tl.program_id(1)
        num_tokens, num_heads = tl.num_programs(0), tl.num_programs(1)
        offs_d = tl.arange(0, D)
        a = _merged(part_acc, part_ml, token, head, num_splits, num_tokens, num_heads, SPLITS, D)
        b = tl.load(b_out + (token * num_heads + head) * D + offs_d)
        qv = tl.load(q + token * stride_qt + head * stride_qh + offs_d).to(tl.float32)
        w = tl.load(gate_w + head * D + offs_d).to(tl.float32)
        g = tl.sigmoid(tl.sum(qv * w, 0) + tl.load(gate_b + head).to(tl.float32))
        tl.store(out + token * stride_ot + head * stride_oh + offs_d, (g * a + (1 - g) * b).to(out.dtype.element_ty))

    @triton.jit
    def _load_tile(tiles, q, stride_qt, stride_qh, num_kv_heads, N_REP: tl.constexpr, BLOCK_M: tl.constexpr,
                   D: tl.constexpr):
        """This program's tile: its rows' q (BLOCK_M, D), tokens, heads, positions and the tile's fields."""
        pid = tl.program_id(0)
        tile, kv_head = pid // num_kv_heads, pid % num_kv_heads
        seq = tl.load(tiles + tile * 4)
        first_row = tl.load(tiles + tile * 4 + 1)
        num_queries = tl.load(tiles + tile * 4 + 2)
        first_pos = tl.load(tiles + tile * 4 + 3)
        r = tl.arange(0, BLOCK_M)
        query = r // N_REP
        heads = kv_head * N_REP + r % N_REP  # (BLOCK_M,)
        rows_ok = query < num_queries
        tokens = (first_row + query).to(tl.int64)
        offs_d = tl.arange(0, D)
        qv = tl.load(q + tokens[:, None] * stride_qt + heads[:, None] * stride_qh + offs_d[None, :],
                     mask=rows_ok[:, None], other=0.0)
        hi = first_pos + num_queries
        q_pos = tl.minimum(first_pos + query, hi - 1)  # padding rows as the last query: they see a key
        return qv, tokens, heads, rows_ok, q_pos, seq, kv_head, first_pos, hi

    @triton.jit
    def _prefill_kernel(
        out, q, k_cache, v_cache, block_tables, tiles, part_acc, part_ml,
        stride_qt, stride_qh, stride_ot, stride_oh, stride_block, stride_token, stride_head, stride_table,
        qk_scale, window, num_kv_heads, num_tokens,
        N_REP: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_SIZE: tl.constexpr, BLOCK_N: tl.constexpr,
        D: tl.constexpr, WINDOWED: tl.constexpr, PRECISION: tl.constexpr, SPLIT: tl.constexpr,
    ):
        qv, tokens, heads, rows_ok, q_pos, seq, kv_head, first_pos, hi = _load_tile(
            tiles, q, stride_qt, stride_qh, num_kv_heads, N_REP, BLOCK_M, D)
        split, num_splits = tl.program_id(1), tl.num_programs(1)
        acc, m, l = _attend_tile(
            qv, q_pos, k_cache, v_cache, block_tables + seq.to(tl.int64) * stride_table, kv_head * stride_head,
            first_pos, hi, window, stride_block, stride_token, qk_scale, split, num_splits,
            BLOCK_M, BLOCK_SIZE, BLOCK_N, D, WINDOWED, PRECISION, SPLIT,
        )
        if SPLIT:
            _store_split(part_acc, part_ml, acc, m, l, tokens, heads, rows_ok, split, num_tokens,
                         num_kv_heads * N_REP, D)
        else:
            offs_d = tl.arange(0, D)
            o_ptrs = out + tokens[:, None] * stride_ot + heads[:, None] * stride_oh + offs_d[None, :]
            tl.store(o_ptrs, (acc / l[:, None]).to(out.dtype.element_ty), mask=rows_ok[:, None])

    @triton.jit
    def _loop_prefill_kernel(
        out, q, k1, v1, k2, v2, block_tables, tiles, gate_w, gate_b, part_acc, part_ml, b_out,
        stride_qt, stride_qh, stride_ot, stride_oh, stride_block, stride_token, stride_head, stride_table,
        qk_scale, window, num_kv_heads, num_tokens,
        N_REP: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_SIZE: tl.constexpr, BLOCK_N: tl.constexpr,
        D: tl.constexpr, PRECISION: tl.constexpr, SPLIT: tl.constexpr,
    ):
        qv, tokens, heads, rows_ok, q_pos, seq, kv_head, first_pos, hi = _load_tile(
            tiles, q, stride_qt, stride_qh, num_kv_heads, N_REP, BLOCK_M, D)
        table = block_tables + seq.to(tl.int64) * stride_table
        head_offset = kv_head * stride_head
        offs_d = tl.arange(0, D)
        if SPLIT:
            # Programs 0 .. S-1 of the axis: partials of A; program S: B (the window), normalised.
            split, num_splits = tl.program_id(1), tl.num_programs(1) - 1
            num_heads = num_kv_heads * N_REP
            if split == num_splits:
                acc, _, l = _attend_tile(
                    qv, q_pos, k2, v2, table, head_offset, first_pos, hi, window, stride_block, stride_token,
                    qk_scale, 0, 1, BLOCK_M, BLOCK_SIZE, BLOCK_N, D, True, PRECISION, False,
                )
                slot = tokens * num_heads + heads
                tl.store(b_out + slot[:, None] * D + offs_d[None, :], acc / l[:, None], mask=rows_ok[:, None])
            else:
                acc, m, l = _attend_tile(
                    qv, q_pos, k1, v1, table, head_offset, first_pos, hi, window, stride_block, stride_token,
                    qk_scale, split, num_splits, BLOCK_M, BLOCK_SIZE, BLOCK_N, D, False, PRECISION, True,
                )
                _store_split(part_acc, part_ml, acc, m, l, tokens, heads, rows_ok, split, num_tokens, num_heads, D)
        else:
            g = loop_gate_rows(qv, gate_w, gate_b, heads, rows_ok, offs_d, D)[:, None]  # (BLOCK_M, 1) float32
            acc, _, l = _attend_tile(
                qv, q_pos, k1, v1, table, head_offset, first_pos, hi, window, stride_block, stride_token, qk_scale,
                0, 1, BLOCK_M, BLOCK_SIZE, BLOCK_N, D, False, PRECISION, False,
            )
            o = g * (acc / l[:, None])  # A's share, (BLOCK_M, D)
            acc, _, l = _attend_tile(
                qv, q_pos, k2, v2, table, head_offset, first_pos, hi, window, stride_block, stride_token, qk_scale,
                0, 1, BLOCK_M, BLOCK_SIZE, BLOCK_N, D, True, PRECISION, False,
            )
            o += (1 - g) * (acc / l[:, None])
            o_ptrs = out + tokens[:, None] * stride_ot + heads[:, None] * stride_oh + offs_d[None, :]
            tl.store(o_ptrs, o.to(out.dtype.element_ty), mask=rows_ok[:, None])


# ---------------------------------------------------------------------------------------
# Launchers


def check_prefill_args(q: torch.Tensor, caches: tuple[torch.Tensor, ...], meta: AttentionMetadata,
                       out: torch.Tensor | None) -> torch.Tensor:
    """Raise ValueError unless the Triton prefill kernels can take these inputs; returns out (or a new one)."""
    blocker = decode_blocker(q, *caches)
    if blocker is not None:
        raise ValueError(f"Triton prefill attention: {blocker}")
    tables = meta.block_tables
    if q.shape[0] != meta.query_start[-1] or tables.dim() != 2 or tables.shape[0] != meta.num_seqs:
        raise ValueError(f"Triton prefill attention: q {tuple(q.shape)} and block_tables {tuple(tables.shape)} "
                         f"do not match the metadata's {meta.num_seqs} sequences of {meta.query_start[-1]} rows")
    if tables.device != q.device or tables.dtype != torch.int64 or tables.stride(1) != 1:
        raise ValueError("Triton prefill attention: block_tables must be int64 on q's device, rows contiguous")
    return output_for(q, out, "Triton prefill attention")



def _partials(q: torch.Tensor, splits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split-K partials: acc (S, T, Hq, D) and (max, sum) (S, T, Hq, 2), float32."""
    tokens, heads, head_dim = q.shape
    return (torch.empty(splits, tokens, heads, head_dim, dtype=torch.float32, device=q.device),
            torch.empty(splits, tokens, heads, 2, dtype=torch.float32, device=q.device))


def paged_prefill_attention_triton(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    meta: AttentionMetadata,
    scale: float,
    window: int | None = None,
    *,
    launch: PrefillLaunch = PrefillLaunch(),
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Prefill/extend attention in Triton: q (T, Hq, D) laid out as in `meta` -> (T, Hq, D).

    The same answer as `paged_attention_ref(q, k_cache, v_cache, meta, scale, window)`;
    any number of query rows per sequence, one included.
    """
    out = check_prefill_args(q, (k_cache, v_cache), meta, out)
    if q.shape[0] == 0:
        return out
    launch, n_rep, tiles, splits = plan_tiles(q, k_cache, meta, False, launch)
    num_kv_heads = k_cache.shape[2]
    part_acc, part_ml = _partials(q, splits) if splits > 1 else (out, out)  # not read without splits
    _prefill_kernel[(tiles.shape[0] * num_kv_heads, splits)](
        out, q, k_cache, v_cache, meta.block_tables, tiles, part_acc, part_ml,
        q.stride(0), q.stride(1), out.stride(0), out.stride(1),
        k_cache.stride(0), k_cache.stride(1), k_cache.stride(2), meta.block_tables.stride(0),
        scale * LOG2E, window or 0, num_kv_heads, q.shape[0],
        N_REP=n_rep, BLOCK_M=launch.block_m, BLOCK_SIZE=meta.block_size, BLOCK_N=launch.block_n, D=q.shape[2],
        WINDOWED=window is not None, PRECISION=dot_precision(q.dtype), SPLIT=splits > 1,
        num_warps=launch.num_warps, num_stages=launch.num_stages,
    )
    if splits > 1:
        _prefill_merge_kernel[(q.shape[0], q.shape[1])](
            out, part_acc, part_ml, out.stride(0), out.stride(1), splits,
            SPLITS=triton.next_power_of_2(splits), D=q.shape[2],
        )
    return out


def loop_prefill_attention_triton(
    q: torch.Tensor,
    global_cache: LayerCache,
    local_cache: LayerCache,
    meta: AttentionMetadata,
    scale: float,
    window: int,
    gate_weight: torch.Tensor,
    gate_bias: torch.Tensor,
    *,
    launch: PrefillLaunch = PrefillLaunch(),
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """The Loop layer's g·A + (1−g)·B for prefill/extend rows in one kernel: q (T, Hq, D) -> (T, Hq, D).

    A: causal over global_cache (loop 1's pages), B: the last `window` keys of local_cache
    (the loop's own pages, same block tables); the same answer as `loop_attention_ref`.
    """
    caches = (*global_cache, *local_cache)
    out = check_prefill_args(q, caches, meta, out)
    num_heads, head_dim = q.shape[1:]
    check_loop_gate(q, gate_weight, gate_bias)
    if q.shape[0] == 0:
        return out
    k_cache = global_cache[0]
    launch, n_rep, tiles, splits = plan_tiles(q, k_cache, meta, True, launch)
    num_kv_heads = k_cache.shape[2]
    part_acc = part_ml = b_out = out  # not read without splits
    if splits > 1:
        part_acc, part_ml = _partials(q, splits)
        b_out = torch.empty(q.shape, dtype=torch.float32, device=q.device)
    _loop_prefill_kernel[(tiles.shape[0] * num_kv_heads, splits + 1 if splits > 1 else 1)](
        out, q, *caches, meta.block_tables, tiles, gate_weight, gate_bias, part_acc, part_ml, b_out,
        q.stride(0), q.stride(1), out.stride(0), out.stride(1),
        k_cache.stride(0), k_cache.stride(1), k_cache.stride(2), meta.block_tables.stride(0),
        scale * LOG2E, window, num_kv_heads, q.shape[0],
        N_REP=n_rep, BLOCK_M=launch.block_m, BLOCK_SIZE=meta.block_size, BLOCK_N=launch.block_n, D=head_dim,
        PRECISION=dot_precision(q.dtype), SPLIT=splits > 1, num_warps=launch.num_warps, num_stages=launch.num_stages,
    )
    if splits > 1:
        _loop_prefill_merge_kernel[(q.shape[0], num_heads)](
            out, q, gate_weight, gate_bias, part_acc, part_ml, b_out, q.stride(0), q.stride(1),
            out.stride(0), out.stride(1), splits, SPLITS=triton.next_power_of_2(splits), D=head_dim,
        )
    return out
