"""Attention of flattened queries over paged K/V, optionally restricted to a sliding window.

This one op serves every case the engine runs: a fresh prefill, a prefill chunk on top
of cached tokens, and decode; loop >= 2 of a Loop model runs it twice over two caches
(`kernels.loop_attention` fuses that pair for decode). See `engine.attention_metadata`
for the layout.

Window rule: a query at position t sees keys t-W+1 .. t (W keys including itself).

Reference: gathers each sequence's pages and calls torch SDPA. GQA is done without
copying K/V: the n_rep query heads of a KV head are folded into the query-length axis.

Triton kernel (decode: one query row per sequence): one program per (sequence, KV head,
split) walks the sequence's keys BLOCK_N at a time, reading each key's page through the
block table, so K/V are read once per KV head for all of its n_rep query heads. The
query heads of a KV head are the rows of one (REP, D) tile, padded to 16 rows for
`tl.dot`::

    block_tables[b]:  [ 7 | 2 | 9 | ... ]        page j of sequence b is cache block table[j]
    k_cache[7]:       (block_size, Hkv, D)        key of token pos: k_cache[table[pos // bs], pos % bs, kv_head]
    program (b, g, s): q rows g*n_rep .. g*n_rep+n_rep-1  x  keys lo+s*chunk .. lo+(s+1)*chunk-1

With a window only pages inside it are read (lo = t-W+1). Split-K (flash-decoding):
long contexts are cut into chunks so that small batches still fill the GPU; each split
writes an unnormalised partial (acc, max, sum) and a second kernel merges them. The split
count is a launch parameter and each sequence cuts its own key range into that many
chunks on the device, so one launch (one captured CUDA graph) fits every context length.
Prefill and prefill chunks (several query rows per sequence) take the tiled flash-attention
kernel of `kernels.prefill_attention`. Which path runs is `kernels.dispatch`'s choice (LOOPCODER_KERNELS); triton
is an optional import, absent from CPU installs.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from loopcoder.engine.attention_metadata import AttentionMetadata

from .device import multiprocessors
from .dispatch import triton_blocker, use_triton

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU installs: the reference serves every case
    triton = None

TRITON_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
LOG2E = 1.4426950408889634  # the kernels take exp2 of log2-scaled scores


def _key_range(context_len: int, num_queries: int, window: int | None) -> tuple[int, int]:
    """[lo, hi) of key positions that any of the sequence's queries can see."""
    first_query = context_len - num_queries
    lo = 0 if window is None else max(0, first_query - window + 1)
    return lo, context_len


def _mask(q_pos: torch.Tensor, k_pos: torch.Tensor, window: int | None) -> torch.Tensor:
    allowed = k_pos[None, :] <= q_pos[:, None]  # (n_q, n_k)
    if window is not None:
        allowed &= k_pos[None, :] > q_pos[:, None] - window
    return allowed


def _decode_one(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """One query row over every key, as two plain matrix products on the cache's own layout.

    q: (Hq, D), k/v: (n_k, Hkv, D) contiguous -> (Hq, D). The query heads go into a block
    diagonal (Hq, Hkv*D) matrix, so the scores of all heads are one (Hq, Hkv*D) @ (Hkv*D, n_k)
    product that reads K once in its stored order; batched per-head products and the
    fused CPU kernel both stall on a single query row.
    """
    num_heads, head_dim = q.shape
    n_k, num_kv_heads = k.shape[:2]
    n_rep = num_heads // num_kv_heads
    q_diag = torch.block_diag(*q.view(num_kv_heads, n_rep, head_dim))  # (Hq, Hkv*D)
    scores = (q_diag @ k.reshape(n_k, num_kv_heads * head_dim).T).float() * scale  # (Hq, n_k)
    probs = torch.softmax(scores, dim=-1).to(v.dtype)
    out = probs @ v.reshape(n_k, num_kv_heads * head_dim)  # (Hq, Hkv*D): head h's answer in block h
    out = out.view(num_kv_heads, n_rep, num_kv_heads, head_dim)
    return torch.diagonal(out, dim1=0, dim2=2).permute(2, 0, 1).reshape(num_heads, head_dim)


def _attend_one(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, scale: float) -> torch.Tensor:
    """q: (n_q, Hq, D), k/v: (n_k, Hkv, D), mask: (n_q, n_k) or None -> (n_q, Hq, D)."""
    n_q, num_heads, head_dim = q.shape
    num_kv_heads = k.shape[1]
    if n_q == 1 and mask is None and k.is_contiguous() and v.is_contiguous():
        return _decode_one(q[0], k, v, scale)[None]
    n_rep = num_heads // num_kv_heads
    # Fold the query heads of each KV head into the length axis: (Hkv, n_rep * n_q, D).
    qg = q.view(n_q, num_kv_heads, n_rep, head_dim).permute(1, 2, 0, 3).reshape(num_kv_heads, n_rep * n_q, head_dim)
    kt, vt = k.transpose(0, 1), v.transpose(0, 1)  # (Hkv, n_k, D)
    if mask is not None:
        mask = mask.repeat(n_rep, 1)  # (n_rep * n_q, n_k), rows ordered (rep, query)
    # 4-D inputs let torch take its fused CPU flash kernel (3-D falls back to bmm + softmax).
    out = F.scaled_dot_product_attention(qg[None], kt[None], vt[None], attn_mask=mask, scale=scale)[0]
    return out.view(num_kv_heads, n_rep, n_q, head_dim).permute(2, 0, 1, 3).reshape(n_q, num_heads, head_dim)


def _pages(cache: torch.Tensor, meta: AttentionMetadata, seq: int, first: int, last: int) -> torch.Tensor:
    """Blocks first..last-1 of a sequence as (n_blocks * block_size, Hkv, D): a view when they are consecutive."""
    if first >= meta.contiguous_from[seq]:
        start = meta.block_tables_host[seq][first]
        return cache[start : start + last - first].flatten(0, 1)
    return cache[meta.block_tables[seq, first:last]].flatten(0, 1)


def paged_attention_ref(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    meta: AttentionMetadata,
    scale: float,
    window: int | None = None,
) -> torch.Tensor:
    """q: (T, Hq, D); caches: (num_blocks, block_size, Hkv, D) -> (T, Hq, D)."""
    if meta.decode_splits is not None or meta.prefill_tiles is not None:
        raise ValueError("a captured step (decode_splits or prefill_tiles set) cannot take the reference attention: "
                         "it reads the host lists, which describe the graph's bounds, not the step")
    out = torch.empty_like(q)
    bs = meta.block_size
    for b in range(meta.num_seqs):
        q_lo, q_hi = meta.query_start[b], meta.query_start[b + 1]
        n_q = q_hi - q_lo
        lo, hi = _key_range(meta.context_lens[b], n_q, window)
        first_block, last_block = lo // bs, (hi + bs - 1) // bs
        offset = first_block * bs
        k = _pages(k_cache, meta, b, first_block, last_block)[lo - offset : hi - offset]  # (n_k, Hkv, D)
        v = _pages(v_cache, meta, b, first_block, last_block)[lo - offset : hi - offset]
        mask = None
        if n_q > 1 or (window is not None and hi - lo > window):
            q_pos = torch.arange(hi - n_q, hi, device=q.device)
            k_pos = torch.arange(lo, hi, device=q.device)
            mask = _mask(q_pos, k_pos, window)
        out[q_lo:q_hi] = _attend_one(q[q_lo:q_hi], k.to(q.dtype), v.to(q.dtype), mask, scale)
    return out


# ---------------------------------------------------------------------------------------
# Triton


if triton is not None:

    @triton.jit
    def _attend_range(
        q, k_cache, v_cache, table, head_offset, lo, hi,
        stride_block, stride_token, qk_scale,
        BLOCK_SIZE: tl.constexpr, BLOCK_N: tl.constexpr, REP: tl.constexpr, D: tl.constexpr,
        PRECISION: tl.constexpr,
    ):
        """Online softmax of the (REP, D) tile q over keys lo .. hi-1 of one sequence and KV head.

        table: the sequence's block-table row; head_offset: the KV head's offset in a token's
        row. Returns acc (REP, D) unnormalised, m (REP,) the running max of the log2-scaled
        scores and l (REP,) the sum of their exp2; lo >= hi gives acc 0, m -inf, l 0.
        """
        offs_n = tl.arange(0, BLOCK_N)
        offs_d = tl.arange(0, D)
        m = tl.full([REP], float("-inf"), tl.float32)
        l = tl.zeros([REP], tl.float32)
        acc = tl.zeros([REP, D], tl.float32)
        for start in range(lo, hi, BLOCK_N):
            pos = start + offs_n  # (BLOCK_N,)
            valid = pos < hi
            block = tl.load(table + pos // BLOCK_SIZE, mask=valid, other=0)  # int64 block ids
            rows = block * stride_block + (pos % BLOCK_SIZE) * stride_token + head_offset  # (BLOCK_N,)
            kv_ptrs = rows[:, None] + offs_d[None, :]  # (BLOCK_N, D)
            k = tl.load(k_cache + kv_ptrs, mask=valid[:, None], other=0.0)
            s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale  # (REP, BLOCK_N)
            s = tl.where(valid[None, :], s, float("-inf"))
            m_new = tl.maximum(m, tl.max(s, 1))
            alpha = tl.exp2(m - m_new)
            p = tl.exp2(s - m_new[:, None])
            l = l * alpha + tl.sum(p, 1)
            v = tl.load(v_cache + kv_ptrs, mask=valid[:, None], other=0.0)
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
            m = m_new
        return acc, m, l

    @triton.jit
    def _split_chunk(span, num_splits, BLOCK_N: tl.constexpr):
        """Keys per split of one sequence: its own span cut in num_splits, rounded up to
        whole BLOCK_N tiles (trailing splits of a short sequence get none)."""
        return tl.cdiv(tl.cdiv(span, num_splits), BLOCK_N) * BLOCK_N

    @triton.jit
    def _store_partial(part_acc, part_ml, acc, m, l, heads, rows_ok, seq, split, num_heads, num_splits, D: tl.constexpr):
        """Split `split`'s (acc, m, l) of the given heads into part_acc (B, Hq, S, D), part_ml (B, Hq, S, 2)."""
        slot = (seq * num_heads + heads) * num_splits + split  # (REP,)
        tl.store(part_acc + slot[:, None] * D + tl.arange(0, D)[None, :], acc, mask=rows_ok[:, None])
        tl.store(part_ml + slot * 2, m, mask=rows_ok)
        tl.store(part_ml + slot * 2 + 1, l, mask=rows_ok)

    @triton.jit
    def _merge_splits(part_acc, part_ml, row, num_splits, SPLITS: tl.constexpr, D: tl.constexpr):
        """The normalised (D,) float32 output of one (sequence, head) row = seq * Hq + head."""
        split = tl.arange(0, SPLITS)
        used = split < num_splits
        slot = row * num_splits + split
        m = tl.load(part_ml + slot * 2, mask=used, other=float("-inf"))
        l = tl.load(part_ml + slot * 2 + 1, mask=used, other=0.0)
        weight = tl.where(m > float("-inf"), tl.exp2(m - tl.max(m, 0)), 0.0)  # empty splits weigh 0
        acc = tl.load(part_acc + slot[:, None] * D + tl.arange(0, D)[None, :], mask=used[:, None], other=0.0)
        return tl.sum(acc * weight[:, None], 0) / tl.sum(l * weight, 0)

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
            chunk = _split_chunk(hi - lo, tl.num_programs(2), BLOCK_N)
            lo = lo + split * chunk
            hi = tl.minimum(hi, lo + chunk)
        rep = tl.arange(0, REP)
        heads = kv_head * n_rep + rep  # (REP,) query heads of this KV head, padded
        rows_ok = rep < n_rep
        offs_d = tl.arange(0, D)
        qv = tl.load(q + seq * stride_qt + heads[:, None] * stride_qh + offs_d[None, :], mask=rows_ok[:, None], other=0.0)
        acc, m, l = _attend_range(
            qv, k_cache, v_cache, block_tables + seq * stride_table, kv_head * stride_head, lo, hi,
            stride_block, stride_token, qk_scale, BLOCK_SIZE, BLOCK_N, REP, D, PRECISION,
        )
        if SPLIT:
            num_heads = tl.num_programs(1) * n_rep
            _store_partial(part_acc, part_ml, acc, m, l, heads, rows_ok, seq, split, num_heads, tl.num_programs(2), D)
        else:
            o = acc / l[:, None]
            o_ptrs = out + seq * stride_ot + heads[:, None] * stride_oh + offs_d[None, :]
            tl.store(o_ptrs, o.to(out.dtype.element_ty), mask=rows_ok[:, None])

    @triton.jit
    def _merge_kernel(out, part_acc, part_ml, stride_ot, stride_oh, num_splits, SPLITS: tl.constexpr, D: tl.constexpr):
        seq, head = tl.program_id(0), tl.program_id(1)
        o = _merge_splits(part_acc, part_ml, seq * tl.num_programs(1) + head, num_splits, SPLITS, D)
        tl.store(out + seq * stride_ot + head * stride_oh + tl.arange(0, D), o.to(out.dtype.element_ty))


def decode_blocker(q: torch.Tensor, *caches: torch.Tensor) -> str | None:
    """Why the Triton decode kernels cannot take these inputs (None: they can)."""
    blocker = triton_blocker(q, *caches)
    if blocker is not None:
        return blocker
    head_dim = q.shape[-1]
    if q.dtype not in TRITON_DTYPES or any(c.dtype != q.dtype for c in caches):
        return f"dtypes q {q.dtype}, cache {caches[0].dtype}: the kernel takes one of fp32/bf16/fp16 for both"
    if head_dim < 16 or head_dim > 256 or head_dim & (head_dim - 1):
        return f"head_dim {head_dim}: the kernel takes a power of two from 16 to 256"
    if q.stride(-1) != 1 or any(c.stride() != caches[0].stride() or c.stride(-1) != 1 for c in caches):
        return "q and the caches need a contiguous head_dim, and the caches one layout"
    return None


def decode_splits(num_programs: int, span: int, device: torch.device, block_n: int) -> int:
    """Splits per (sequence, KV head): about four programs per multiprocessor in all, a power
    of two, and at least one block_n tile of keys per split (chosen from the sweep in
    benchmarks/attention_kernels.py: on an H200 this was the best count at batch 1, 8 and 32)."""
    if device.type != "cuda":
        return 1
    wanted = max(1, 4 * multiprocessors(device) // num_programs)
    wanted = 1 << (wanted.bit_length() - 1)  # the largest power of two <= wanted
    return max(1, min(wanted, span // block_n))


@dataclass(frozen=True)
class DecodeLaunch:
    """How a decode kernel is cut. The defaults come from benchmarks/attention_kernels.py."""

    num_splits: int | None = None  # None: decode_splits() decides
    block_n: int = 64  # keys per step of the inner loop
    num_warps: int = 4
    num_stages: int = 2


def rep_tile(n_rep: int) -> int:
    """Rows of the query tile: the n_rep query heads of a KV head, padded for tl.dot."""
    return max(16, triton.next_power_of_2(n_rep))


def dot_precision(dtype: torch.dtype) -> str:
    # float32 caches get exact float32 products; tf32 would cost ~3e-4 relative error.
    return "ieee" if dtype == torch.float32 else "tf32"


def split_plan(batch: int, num_kv_heads: int, span: int, device: torch.device, launch: DecodeLaunch) -> int:
    """Splits per (sequence, KV head); span: most keys any query sees. Each sequence cuts its
    own keys into that many chunks in the kernel, so a fixed count (a CUDA graph's) serves
    every length."""
    return launch.num_splits or decode_splits(batch * num_kv_heads, span, device, launch.block_n)


def check_decode_args(
    q: torch.Tensor, caches: tuple[torch.Tensor, ...], block_tables: torch.Tensor, positions: torch.Tensor
) -> None:
    """Raise ValueError unless the Triton decode kernels can take these inputs."""
    blocker = decode_blocker(q, *caches)
    if blocker is not None:
        raise ValueError(f"Triton decode attention: {blocker}")
    batch = q.shape[0]
    if block_tables.dim() != 2 or block_tables.shape[0] != batch or tuple(positions.shape) != (batch,):
        raise ValueError(
            f"Triton decode attention: block_tables {tuple(block_tables.shape)} and positions "
            f"{tuple(positions.shape)} need one row per query row ({batch})"
        )
    if block_tables.device != q.device or positions.device != q.device:
        raise ValueError("Triton decode attention: block_tables and positions must be on q's device")
    if block_tables.dtype != torch.int64 or positions.dtype != torch.int64 or block_tables.stride(1) != 1:
        raise ValueError("Triton decode attention: block_tables and positions must be int64, rows contiguous")


def output_for(q: torch.Tensor, out: torch.Tensor | None, what: str) -> torch.Tensor:
    """`out`, checked to take a kernel's answer for q (same shape and dtype, contiguous rows), or a new one."""
    if out is None:
        return torch.empty_like(q)
    if out.shape != q.shape or out.dtype != q.dtype or out.stride(-1) != 1:
        raise ValueError(f"{what}: out {tuple(out.shape)} {out.dtype} does not match q")
    return out


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


# ---------------------------------------------------------------------------------------
# Dispatch


def check_attention_shapes(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, window: int | None) -> None:
    if q.dim() != 3 or k_cache.dim() != 4 or k_cache.shape != v_cache.shape:
        raise ValueError(f"paged_attention shapes: q {tuple(q.shape)}, k_cache {tuple(k_cache.shape)}")
    if q.shape[2] != k_cache.shape[3] or q.shape[1] % k_cache.shape[2]:
        raise ValueError(f"head layout mismatch: q {tuple(q.shape)} vs cache {tuple(k_cache.shape)}")
    if window is not None and window < 1:
        raise ValueError(f"window must be >= 1, got {window}")


def is_decode(q: torch.Tensor, meta: AttentionMetadata) -> bool:
    """One query row per sequence (every scheduled sequence has at least one row)."""
    return q.shape[0] == meta.num_seqs


def paged_attention(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    meta: AttentionMetadata,
    scale: float,
    window: int | None = None,
) -> torch.Tensor:
    """q: (T, Hq, D); caches: (num_blocks, block_size, Hkv, D) -> (T, Hq, D).

    Where `kernels.dispatch` allows, decode batches take the Triton decode kernel, prefill
    and prefill chunks the Triton prefill kernel (`kernels.prefill_attention`).
    """
    check_attention_shapes(q, k_cache, v_cache, window)
    if not use_triton("paged_attention", lambda: decode_blocker(q, k_cache, v_cache)):
        return paged_attention_ref(q, k_cache, v_cache, meta, scale, window)
    if is_decode(q, meta):
        return paged_decode_attention_triton(
            q, k_cache, v_cache, meta.block_tables, meta.positions, max(meta.context_lens), scale, window,
            launch=decode_launch(meta.decode_splits),
        )
    from . import prefill_attention  # imports this module

    return prefill_attention.paged_prefill_attention_triton(q, k_cache, v_cache, meta, scale, window)


@functools.cache
def decode_launch(num_splits: int | None) -> DecodeLaunch:
    """The default launch, with a fixed split count where the step sets one (a CUDA graph's)."""
    return DecodeLaunch(num_splits=num_splits)
