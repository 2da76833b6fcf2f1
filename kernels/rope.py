"""Rotary embedding applied to q and k, with k and v written into their paged cache slots.

    q, k  (T, H, D):   x -> x * cos[pos] + rotate_half(x) * sin[pos]
                       rotate_half(x) = (-x[D/2:], x[:D/2])      (the half-split layout)
    k_cache.view(-1, Hkv, D)[slot_mapping[t]] = rotated k[t];  v likewise, unrotated

`cos` and `sin` are the model's float32 tables (max_position, D). The reference is the
sequence the model ran before this op existed: gather the rows, cast them to q's dtype,
rotate (each product and the sum rounded to the dtype), then `store_kv`. The Triton
kernel does one token per program: it reads q, k and v once, rotates q in place, writes
k and v straight into the pages, and rounds where the reference does (bit-equal under the
interpreter; compiled, within one unit in the last place: the compiler may fold an
intermediate rounding away).
"""

from __future__ import annotations

import torch

from .dispatch import triton_blocker, use_triton
from .kv_store import store_kv_ref

try:
    import triton
    import triton.language as tl
except ImportError:
    triton = None

TRITON_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def rope_ref(q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor, cos: torch.Tensor,
             sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotated (q, k), new tensors."""
    c = cos[positions].unsqueeze(1).to(q.dtype)  # (T, 1, D)
    s = sin[positions].unsqueeze(1).to(q.dtype)
    return q * c + rotate_half(q) * s, k * c + rotate_half(k) * s


if triton is not None:

    @triton.jit
    def _rotate(x_ptr, rows, heads_ok, c1, s1, c2, s2, HALF: tl.constexpr):
        """The rotated halves of the (H, D) tile at x_ptr + rows, rounded as the reference rounds."""
        d = tl.arange(0, HALF)
        dtype = x_ptr.dtype.element_ty
        x1 = tl.load(x_ptr + rows[:, None] + d[None, :], mask=heads_ok[:, None], other=0.0).to(tl.float32)
        x2 = tl.load(x_ptr + rows[:, None] + HALF + d[None, :], mask=heads_ok[:, None], other=0.0).to(tl.float32)
        lo = (x1 * c1[None, :]).to(dtype).to(tl.float32) + (-x2 * s1[None, :]).to(dtype).to(tl.float32)
        hi = (x2 * c2[None, :]).to(dtype).to(tl.float32) + (x1 * s2[None, :]).to(dtype).to(tl.float32)
        return lo.to(dtype), hi.to(dtype)

    @triton.jit
    def _rope_store_kernel(
        q, k, v, positions, cos, sin, k_cache, v_cache, slot_mapping,
        stride_qt, stride_qh, stride_kt, stride_kh, stride_vt, stride_vh, stride_table,
        num_heads, num_kv_heads,
        HALF: tl.constexpr, H_BLOCK: tl.constexpr, KV_BLOCK: tl.constexpr,
    ):
        t = tl.program_id(0)
        pos = tl.load(positions + t)
        d = tl.arange(0, HALF)
        dtype = q.dtype.element_ty
        # The tables rounded to q's dtype, as the reference casts them.
        c1 = tl.load(cos + pos * stride_table + d).to(dtype).to(tl.float32)
        c2 = tl.load(cos + pos * stride_table + HALF + d).to(dtype).to(tl.float32)
        s1 = tl.load(sin + pos * stride_table + d).to(dtype).to(tl.float32)
        s2 = tl.load(sin + pos * stride_table + HALF + d).to(dtype).to(tl.float32)

        heads = tl.arange(0, H_BLOCK)
        q_ok = heads < num_heads
        q_rows = t * stride_qt + heads * stride_qh
        lo, hi = _rotate(q, q_rows, q_ok, c1, s1, c2, s2, HALF)
        tl.store(q + q_rows[:, None] + d[None, :], lo, mask=q_ok[:, None])
        tl.store(q + q_rows[:, None] + HALF + d[None, :], hi, mask=q_ok[:, None])

        kv_heads = tl.arange(0, KV_BLOCK)
        kv_ok = kv_heads < num_kv_heads
        slot = tl.load(slot_mapping + t)
        cache_rows = slot * num_kv_heads * (2 * HALF) + kv_heads * (2 * HALF)  # the pages are contiguous
        lo, hi = _rotate(k, t * stride_kt + kv_heads * stride_kh, kv_ok, c1, s1, c2, s2, HALF)
        cache_dtype = k_cache.dtype.element_ty
        tl.store(k_cache + cache_rows[:, None] + d[None, :], lo.to(cache_dtype), mask=kv_ok[:, None])
        tl.store(k_cache + cache_rows[:, None] + HALF + d[None, :], hi.to(cache_dtype), mask=kv_ok[:, None])
        full = tl.arange(0, 2 * HALF)
        v_rows = t * stride_vt + kv_heads * stride_vh
        vv = tl.load(v + v_rows[:, None] + full[None, :], mask=kv_ok[:, None], other=0.0)
        tl.store(v_cache + cache_rows[:, None] + full[None, :], vv.to(cache_dtype), mask=kv_ok[:, None])


def rope_store_blocker(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cos: torch.Tensor,
                       k_cache: torch.Tensor, v_cache: torch.Tensor) -> str | None:
    blocker = triton_blocker(q, k, v, cos, k_cache, v_cache)
    if blocker is not None:
        return blocker
    if q.dtype not in TRITON_DTYPES or k.dtype != q.dtype or v.dtype != q.dtype or k_cache.dtype != q.dtype:
        return f"dtypes q {q.dtype}, cache {k_cache.dtype}: the kernel takes one of fp32/bf16/fp16 for all"
    head_dim = q.shape[-1]
    if head_dim < 16 or head_dim & (head_dim - 1):
        return f"head_dim {head_dim}: the kernel takes a power of two from 16"
    if any(t.stride(-1) != 1 for t in (q, k, v, cos)) or not (k_cache.is_contiguous() and v_cache.is_contiguous()):
        return "q, k, v and the tables need a contiguous head_dim, the caches a contiguous layout"
    return None


def rope_store(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, positions: torch.Tensor, cos: torch.Tensor,
               sin: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, slot_mapping: torch.Tensor) -> torch.Tensor:
    """q (T, Hq, D), k, v (T, Hkv, D), positions and slot_mapping (T,) int64, cos/sin (L, D)
    float32 with L > every position; caches (num_blocks, block_size, Hkv, D). Writes rotated
    k and v into the cache and returns rotated q (q itself on the Triton path)."""
    if k.shape != v.shape or k.shape[1:] != k_cache.shape[2:] or q.shape[-1] != k.shape[-1] or cos.shape != sin.shape \
            or cos.shape[-1] != q.shape[-1] or not (q.shape[0] == k.shape[0] == positions.shape[0] == slot_mapping.shape[0]):
        raise ValueError(f"rope_store shapes disagree: q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}, "
                         f"cache {tuple(k_cache.shape)}, table {tuple(cos.shape)}, positions {tuple(positions.shape)}")
    if not use_triton("rope_store", lambda: rope_store_blocker(q, k, v, cos, k_cache, v_cache)):
        q, k = rope_ref(q, k, positions, cos, sin)
        store_kv_ref(k, v, k_cache, v_cache, slot_mapping)
        return q
    tokens, num_heads, head_dim = q.shape
    num_kv_heads = k.shape[1]
    if tokens:
        _rope_store_kernel[(tokens,)](
            q, k, v, positions, cos, sin, k_cache, v_cache, slot_mapping,
            q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1), cos.stride(0),
            num_heads, num_kv_heads,
            HALF=head_dim // 2, H_BLOCK=triton.next_power_of_2(num_heads), KV_BLOCK=triton.next_power_of_2(num_kv_heads),
            num_warps=4,
        )
    return q
