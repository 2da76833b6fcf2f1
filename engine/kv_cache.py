"""Paged KV cache: the page tensors, and the block pool that hands pages out.

Memory layout (one tensor for K, one for V)::

    k[cache_layer, block, slot_in_block, kv_head, head_dim]
      cache_layer = loop * num_layers + layer   (loop 0 = the dense / loop-1 K/V)

A block holds `block_size` consecutive tokens of one sequence across every layer and
loop, so one block table per sequence addresses all of them.

Blocks that are full carry a content hash chained over the whole prefix (vLLM's
automatic prefix caching): two sequences that share a prefix share its blocks. A block
nobody references keeps its hash and waits in an LRU; it is reused on a hash hit or
evicted when fresh blocks run out.
"""

from __future__ import annotations

import hashlib
from array import array
from collections import OrderedDict
from dataclasses import dataclass

import torch

from .config import ModelConfig
from .errors import KVCacheOutOfMemoryError

_DTYPE_BYTES = {torch.float32: 4, torch.float16: 2, torch.bfloat16: 2}


@dataclass(frozen=True)
class CacheConfig:
    """Sizes chosen at run time from the byte budget."""

    num_blocks: int
    block_size: int
    dtype: torch.dtype

    @classmethod
    def from_budget(cls, model: ModelConfig, budget_bytes: int, block_size: int, dtype: torch.dtype) -> "CacheConfig":
        per_block = block_size * model.kv_bytes_per_token(_DTYPE_BYTES[dtype])
        num_blocks = budget_bytes // per_block
        if num_blocks < 1:
            raise KVCacheOutOfMemoryError(
                f"KV budget of {budget_bytes} bytes holds no block: one block of {block_size} tokens "
                f"needs {per_block} bytes for this model"
            )
        return cls(num_blocks=num_blocks, block_size=block_size, dtype=dtype)

    def bytes_per_block(self, model: ModelConfig) -> int:
        return self.block_size * model.kv_bytes_per_token(_DTYPE_BYTES[self.dtype])


class KVCache:
    """The page tensors. `layer(i)` returns cache layer i's (k, v), each (num_blocks, block_size, Hkv, D)."""

    def __init__(self, model: ModelConfig, num_blocks: int, block_size: int, dtype: torch.dtype, device: torch.device | str):
        shape = (model.num_kv_cache_layers, num_blocks, block_size, model.num_key_value_heads, model.head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.block_size = block_size

    def layer(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.k[index], self.v[index]

    def copy_block(self, src: int, dst: int) -> None:
        self.k[:, dst].copy_(self.k[:, src])
        self.v[:, dst].copy_(self.v[:, src])

    @property
    def nbytes(self) -> int:
        return self.k.nbytes + self.v.nbytes


def block_hash(parent: bytes, token_ids: list[int] | tuple[int, ...]) -> bytes:
    """Content hash of a full block, chained over everything before it."""
    digest = hashlib.blake2b(parent, digest_size=16)
    digest.update(array("I", token_ids).tobytes())
    return digest.digest()


ROOT_HASH = b"loopcoder-kv-root"


class BlockPool:
    """Reference-counted blocks with hash lookup and LRU reuse. Pure Python, no tensors."""

    def __init__(self, num_blocks: int) -> None:
        if num_blocks < 1:
            raise ValueError(f"num_blocks must be >= 1, got {num_blocks}")
        self.num_blocks = num_blocks
        self.ref_counts = [0] * num_blocks
        self.hashes: list[bytes | None] = [None] * num_blocks
        self._free: dict[int, None] = dict.fromkeys(range(num_blocks))  # unreferenced, no hash; ordered
        self._cached: OrderedDict[int, None] = OrderedDict()  # unreferenced, hashed; LRU first
        self._by_hash: dict[bytes, int] = {}
        self.hits = self.evictions = 0

    @property
    def num_available(self) -> int:
        return len(self._free) + len(self._cached)

    @property
    def num_cached(self) -> int:
        return len(self._cached)

    def allocate(self, count: int, after: int | None = None) -> list[int] | None:
        """`count` fresh blocks with ref_count 1, or None when there is no room.

        With `after`, blocks `after+1, after+2, ...` are taken while they are unreferenced,
        so a sequence's pages stay contiguous and attention can read them without a gather.
        """
        if count > self.num_available:
            return None
        blocks = []
        nxt = None if after is None else after + 1
        while len(blocks) < count:
            if nxt is not None and nxt < self.num_blocks and self.ref_counts[nxt] == 0:
                block = nxt
                if block in self._free:
                    del self._free[block]
                else:
                    del self._cached[block]
                    self._evict(block)
                nxt += 1
            else:
                nxt = None
                block = self._take_any()
            self.ref_counts[block] = 1
            blocks.append(block)
        return blocks

    def _take_any(self) -> int:
        if self._free:
            block = next(iter(self._free))
            del self._free[block]
            return block
        block, _ = self._cached.popitem(last=False)
        self._evict(block)
        return block

    def _evict(self, block: int) -> None:
        self._drop_hash(block)
        self.evictions += 1

    def allocate_or_raise(self, count: int, what: str, after: int | None = None) -> list[int]:
        blocks = self.allocate(count, after)
        if blocks is None:
            raise KVCacheOutOfMemoryError(
                f"KV cache full: {what} needs {count} more block(s), {self.num_available} of "
                f"{self.num_blocks} are free; close documents or raise the KV budget"
            )
        return blocks

    def lookup(self, digest: bytes) -> int | None:
        """Take a reference on the block holding `digest`, if any."""
        block = self._by_hash.get(digest)
        if block is None:
            return None
        if self.ref_counts[block] == 0:
            del self._cached[block]
        self.ref_counts[block] += 1
        self.hits += 1
        return block

    def register(self, block: int, digest: bytes) -> None:
        """Record that `block` is full and holds the content named by `digest`."""
        if self.hashes[block] == digest:
            return
        self._drop_hash(block)
        self.hashes[block] = digest
        self._by_hash.setdefault(digest, block)

    def forget(self, block: int) -> None:
        """The owner is about to overwrite `block`: it no longer matches its hash."""
        if self.ref_counts[block] != 1:
            raise ValueError(f"block {block} is shared (ref {self.ref_counts[block]}); copy it before writing")
        self._drop_hash(block)

    def release(self, blocks: list[int], keep_hashes: bool = True) -> None:
        """Drop one reference from each block; keep_hashes=False also makes the ones nobody
        holds any more unfindable, so their content is never reused (caching off)."""
        for block in blocks:
            if self.ref_counts[block] <= 0:
                raise ValueError(f"block {block} released more often than taken")
            self.ref_counts[block] -= 1
            if self.ref_counts[block] == 0:
                if not keep_hashes:
                    self._drop_hash(block)
                if self.hashes[block] is None:
                    self._free[block] = None
                else:
                    self._cached[block] = None

    def _drop_hash(self, block: int) -> None:
        digest = self.hashes[block]
        if digest is not None:
            if self._by_hash.get(digest) == block:
                del self._by_hash[digest]
            self.hashes[block] = None
