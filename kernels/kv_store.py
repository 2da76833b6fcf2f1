"""Write a step's new K/V rows into their paged cache slots.

Triton kernel: none yet (index_copy_ is one fused op on every device). The public
function is the dispatch point a GPU kernel will slot into.
"""

from __future__ import annotations

import torch


def store_kv_ref(
    k: torch.Tensor, v: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, slot_mapping: torch.Tensor
) -> None:
    """k, v: (T, Hkv, D); caches: (num_blocks, block_size, Hkv, D); slot_mapping: (T,) int64."""
    num_kv_heads, head_dim = k_cache.shape[-2:]
    k_cache.view(-1, num_kv_heads, head_dim).index_copy_(0, slot_mapping, k.to(k_cache.dtype))
    v_cache.view(-1, num_kv_heads, head_dim).index_copy_(0, slot_mapping, v.to(v_cache.dtype))


def store_kv(
    k: torch.Tensor, v: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, slot_mapping: torch.Tensor
) -> None:
    if k.shape != v.shape or k.shape[1:] != k_cache.shape[2:] or k.shape[0] != slot_mapping.shape[0]:
        raise ValueError(
            f"store_kv shapes disagree: k {tuple(k.shape)}, v {tuple(v.shape)}, "
            f"cache {tuple(k_cache.shape)}, slots {tuple(slot_mapping.shape)}"
        )
    store_kv_ref(k, v, k_cache, v_cache, slot_mapping)
