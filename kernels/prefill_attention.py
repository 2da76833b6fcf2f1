"""Prefill and prefill-chunk ("extend") attention over paged K/V in Triton, plain and gated Loop.

Sequence b's n_q query rows sit at positions context_lens[b] - n_q .. context_lens[b] - 1
and each attends to the sequence's cached keys 0 .. its own position (their K/V are
already in the pages), or to the last W of them with a window. The torch references are
`kernels.attention.paged_attention_ref` and `kernels.loop_attention.loop_attention_ref`;
the dispatchers there send multi-row batches here.

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

import functools
from dataclasses import dataclass

import torch

from loopcoder.engine.attention_metadata import AttentionMetadata

from .attention import LOG2E, decode_blocker, dot_precision, triton

LayerCache = tuple[torch.Tensor, torch.Tensor]  # (k_cache, v_cache), each (num_blocks, block_size, Hkv, D)
TILE_FIELDS = 4  # sequence, first query row, number of queries, position of the first query


@dataclass(frozen=True)
class PrefillLaunch:
    """How a prefill kernel is cut; None fields: `default_launch` decides."""

    block_m: int | None = None  # rows of a query tile: queries x n_rep heads, padded to a power of two
    block_n: int | None = None  # keys per step of the inner loop
    num_warps: int | None = None
    num_stages: int | None = None


def default_launch(dtype: torch.dtype, head_dim: int, gated: bool, launch: PrefillLaunch) -> PrefillLaunch:
    """Fill launch's unset fields. 16-bit, D <= 128: 128 x 64 tiles, 3 stages, 4 warps (8 for the
    Loop kernel's two accumulators), the best of `benchmarks/prefill_attention.py --sweep` on an
    H200 (40/8 heads, D 128, bf16, an 8K prefill and a 512 chunk on 32K). fp32 and D 256: smaller
    tiles, so that the wide rows fit the registers and shared memory (chosen for fitting, not timed)."""
    if dtype.itemsize == 4 or head_dim > 128:
        chosen = PrefillLaunch(block_m=64, block_n=32, num_warps=4, num_stages=2)
    else:
        chosen = PrefillLaunch(block_m=128, block_n=64, num_warps=8 if gated else 4, num_stages=3)
    return PrefillLaunch(
        block_m=launch.block_m or chosen.block_m,
        block_n=launch.block_n or chosen.block_n,
        num_warps=launch.num_warps or chosen.num_warps,
        num_stages=launch.num_stages or chosen.num_stages,
    )


@functools.lru_cache(maxsize=16)
def _tile_map(query_start: tuple[int, ...], context_lens: tuple[int, ...], queries: int, device: torch.device):
    """(num_tiles, TILE_FIELDS) int32 on device; the same batch's layers share one (hence the cache)."""
    tiles = []
    for seq, context_len in enumerate(context_lens):
        row_lo, row_hi = query_start[seq], query_start[seq + 1]
        first_pos = context_len - (row_hi - row_lo)
        for row in range(row_lo, row_hi, queries):
            n = min(queries, row_hi - row)
            tiles.append((seq, row, n, first_pos + row - row_lo))
    tiles.sort(key=lambda t: -(t[3] + t[2]))  # most keys first: the causal tail of the batch ends together
    return torch.tensor(tiles, dtype=torch.int32, device=device)


def tile_map(meta: AttentionMetadata, queries: int, device: torch.device) -> torch.Tensor:
    return _tile_map(tuple(meta.query_start), tuple(meta.context_lens), queries, device)


# ---------------------------------------------------------------------------------------
# Triton


if triton is not None:
    import triton.language as tl

    from .loop_attention import _gate

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
        stride_block, stride_token, qk_scale,
        BLOCK_M: tl.constexpr, BLOCK_SIZE: tl.constexpr, BLOCK_N: tl.constexpr, D: tl.constexpr,
        WINDOWED: tl.constexpr, PRECISION: tl.constexpr,
    ):
        """acc (BLOCK_M, D) unnormalised, m and l (BLOCK_M,) of the tile's queries at first_pos .. hi-1."""
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
        acc, m, l = _key_blocks(acc, m, l, q, q_pos, k_cache, v_cache, table, head_offset, lo, full_lo, hi, window,
                                stride_block, stride_token, qk_scale, BLOCK_SIZE, BLOCK_N, D, True, WINDOWED, PRECISION)
        acc, m, l = _key_blocks(acc, m, l, q, q_pos, k_cache, v_cache, table, head_offset, full_lo, full_hi, hi,
                                window, stride_block, stride_token, qk_scale, BLOCK_SIZE, BLOCK_N, D, False, WINDOWED,
                                PRECISION)
        acc, m, l = _key_blocks(acc, m, l, q, q_pos, k_cache, v_cache, table, head_offset, full_hi, hi, hi, window,
                                stride_block, stride_token, qk_scale, BLOCK_SIZE, BLOCK_N, D, True, WINDOWED, PRECISION)
        return acc, m, l

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
        out, q, k_cache, v_cache, block_tables, tiles,
        stride_qt, stride_qh, stride_ot, stride_oh, stride_block, stride_token, stride_head, stride_table,
        qk_scale, window, num_kv_heads,
        N_REP: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_SIZE: tl.constexpr, BLOCK_N: tl.constexpr,
        D: tl.constexpr, WINDOWED: tl.constexpr, PRECISION: tl.constexpr,
    ):
        qv, tokens, heads, rows_ok, q_pos, seq, kv_head, first_pos, hi = _load_tile(
            tiles, q, stride_qt, stride_qh, num_kv_heads, N_REP, BLOCK_M, D)
        acc, _, l = _attend_tile(
            qv, q_pos, k_cache, v_cache, block_tables + seq.to(tl.int64) * stride_table, kv_head * stride_head,
            first_pos, hi, window, stride_block, stride_token, qk_scale,
            BLOCK_M, BLOCK_SIZE, BLOCK_N, D, WINDOWED, PRECISION,
        )
        offs_d = tl.arange(0, D)
        o_ptrs = out + tokens[:, None] * stride_ot + heads[:, None] * stride_oh + offs_d[None, :]
        tl.store(o_ptrs, (acc / l[:, None]).to(out.dtype.element_ty), mask=rows_ok[:, None])

    @triton.jit
    def _loop_prefill_kernel(
        out, q, k1, v1, k2, v2, block_tables, tiles, gate_w, gate_b,
        stride_qt, stride_qh, stride_ot, stride_oh, stride_block, stride_token, stride_head, stride_table,
        qk_scale, window, num_kv_heads,
        N_REP: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_SIZE: tl.constexpr, BLOCK_N: tl.constexpr,
        D: tl.constexpr, PRECISION: tl.constexpr,
    ):
        qv, tokens, heads, rows_ok, q_pos, seq, kv_head, first_pos, hi = _load_tile(
            tiles, q, stride_qt, stride_qh, num_kv_heads, N_REP, BLOCK_M, D)
        table = block_tables + seq.to(tl.int64) * stride_table
        head_offset = kv_head * stride_head
        offs_d = tl.arange(0, D)
        g = _gate(qv, gate_w, gate_b, heads, rows_ok, offs_d, D)[:, None]  # (BLOCK_M, 1) float32
        acc, _, l = _attend_tile(
            qv, q_pos, k1, v1, table, head_offset, first_pos, hi, window, stride_block, stride_token, qk_scale,
            BLOCK_M, BLOCK_SIZE, BLOCK_N, D, False, PRECISION,
        )
        o = g * (acc / l[:, None])  # A's share, (BLOCK_M, D)
        acc, _, l = _attend_tile(
            qv, q_pos, k2, v2, table, head_offset, first_pos, hi, window, stride_block, stride_token, qk_scale,
            BLOCK_M, BLOCK_SIZE, BLOCK_N, D, True, PRECISION,
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
    out = torch.empty_like(q) if out is None else out
    if out.shape != q.shape or out.dtype != q.dtype or out.stride(-1) != 1:
        raise ValueError(f"Triton prefill attention: out {tuple(out.shape)} {out.dtype} does not match q")
    return out


def _full_launch(dtype: torch.dtype, head_dim: int, n_rep: int, gated: bool, launch: PrefillLaunch) -> PrefillLaunch:
    launch = default_launch(dtype, head_dim, gated, launch)
    if launch.block_m < n_rep:  # a tile holds at least one query's n_rep heads
        launch = PrefillLaunch(triton.next_power_of_2(n_rep), launch.block_n, launch.num_warps, launch.num_stages)
    return launch


def queries_per_tile(dtype: torch.dtype, head_dim: int, n_rep: int) -> int:
    """Query rows of one sequence a tile holds with the default launch (a CUDA graph's tile map
    is laid out with it: engine/cuda_graphs.py)."""
    return _full_launch(dtype, head_dim, n_rep, False, PrefillLaunch()).block_m // n_rep


def _tiling(q: torch.Tensor, k_cache: torch.Tensor, meta: AttentionMetadata, gated: bool,
            launch: PrefillLaunch) -> tuple[PrefillLaunch, int, torch.Tensor]:
    """(launch with every field set, n_rep, tile map). A captured step brings its own tile map
    (`meta.prefill_tiles`, laid out for the default launch), filled on the device each step."""
    n_rep = q.shape[1] // k_cache.shape[2]
    launch = _full_launch(q.dtype, q.shape[2], n_rep, gated, launch)
    if meta.prefill_tiles is not None:
        return launch, n_rep, meta.prefill_tiles
    return launch, n_rep, tile_map(meta, launch.block_m // n_rep, q.device)


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
    launch, n_rep, tiles = _tiling(q, k_cache, meta, False, launch)
    num_kv_heads = k_cache.shape[2]
    _prefill_kernel[(tiles.shape[0] * num_kv_heads,)](
        out, q, k_cache, v_cache, meta.block_tables, tiles,
        q.stride(0), q.stride(1), out.stride(0), out.stride(1),
        k_cache.stride(0), k_cache.stride(1), k_cache.stride(2), meta.block_tables.stride(0),
        scale * LOG2E, window or 0, num_kv_heads,
        N_REP=n_rep, BLOCK_M=launch.block_m, BLOCK_SIZE=meta.block_size, BLOCK_N=launch.block_n, D=q.shape[2],
        WINDOWED=window is not None, PRECISION=dot_precision(q.dtype),
        num_warps=launch.num_warps, num_stages=launch.num_stages,
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
    if tuple(gate_weight.shape) != (num_heads, head_dim) or tuple(gate_bias.shape) != (num_heads,):
        raise ValueError(f"loop gate: weight {tuple(gate_weight.shape)}, bias {tuple(gate_bias.shape)} for q {tuple(q.shape)}")
    if not (gate_weight.is_contiguous() and gate_bias.is_contiguous()) or gate_weight.device != q.device:
        raise ValueError("loop gate: weight and bias must be contiguous and on q's device")
    if q.shape[0] == 0:
        return out
    k_cache = global_cache[0]
    launch, n_rep, tiles = _tiling(q, k_cache, meta, True, launch)
    num_kv_heads = k_cache.shape[2]
    _loop_prefill_kernel[(tiles.shape[0] * num_kv_heads,)](
        out, q, *caches, meta.block_tables, tiles, gate_weight, gate_bias,
        q.stride(0), q.stride(1), out.stride(0), out.stride(1),
        k_cache.stride(0), k_cache.stride(1), k_cache.stride(2), meta.block_tables.stride(0),
        scale * LOG2E, window, num_kv_heads,
        N_REP=n_rep, BLOCK_M=launch.block_m, BLOCK_SIZE=meta.block_size, BLOCK_N=launch.block_n, D=head_dim,
        PRECISION=dot_precision(q.dtype), num_warps=launch.num_warps, num_stages=launch.num_stages,
    )
    return out
