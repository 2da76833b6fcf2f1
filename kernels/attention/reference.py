"""The torch reference of paged attention: what every attention kernel is tested against,
and what runs wherever no kernel can (CPU, or LOOPCODER_KERNELS=torch).

It serves every case the engine runs: a fresh prefill, a prefill chunk on top of cached
tokens, and decode (see `metadata` for the layout). Each sequence's pages are gathered
(or sliced, where they are consecutive blocks) and handed to torch SDPA. GQA is done
without copying K/V: the n_rep query heads of a KV head are folded into the query-length
axis.

Window rule: a query at position t sees keys t-W+1 .. t (W keys including itself).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .metadata import AttentionMetadata


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
