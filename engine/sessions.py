"""Per-document state: the tokens whose K/V sit in the cache, and the blocks holding them.

`SessionCache` owns the bookkeeping between sessions and the block pool. The engine
drives it: `plan` cuts a session back to the longest prefix it shares with a new prompt
(taking shared blocks from the pool's hash table where it can), `reserve` makes room
for the tokens to compute, and `commit` records them once their K/V are written.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from .kv_cache import ROOT_HASH, BlockPool, KVCache, block_hash


@dataclass
class DocumentSession:
    key: str
    tokens: list[int] = field(default_factory=list)  # tokens whose K/V are in the cache
    block_table: list[int] = field(default_factory=list)
    block_hashes: list[bytes] = field(default_factory=list)  # one per full block, chained
    pinned: bool = True
    last_used: float = field(default_factory=time.monotonic)

    @property
    def num_tokens(self) -> int:
        return len(self.tokens)


def common_prefix_len(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    # Compare in slices first: Python list equality is fast in C.
    step = 256
    while i + step <= n and a[i : i + step] == b[i : i + step]:
        i += step
    while i < n and a[i] == b[i]:
        i += 1
    return i


class SessionCache:
    def __init__(self, pool: BlockPool, kv: KVCache) -> None:
        self.pool = pool
        self.kv = kv
        self.block_size = kv.block_size

    def plan(self, session: DocumentSession, prompt: list[int]) -> int:
        """Cut `session` back to what `prompt` can reuse; returns how many tokens are kept.

        At least the last prompt token is left to compute, since its logits are needed.
        """
        keep = min(common_prefix_len(session.tokens, prompt), len(prompt) - 1)
        self.truncate(session, keep)
        self._adopt_shared_blocks(session, prompt)
        return session.num_tokens

    def truncate(self, session: DocumentSession, keep: int) -> None:
        bs = self.block_size
        num_blocks = (keep + bs - 1) // bs
        self.pool.release(session.block_table[num_blocks:])
        del session.block_table[num_blocks:]
        del session.block_hashes[keep // bs :]
        del session.tokens[keep:]
        if keep % bs:
            self._make_last_block_writable(session)

    def _make_last_block_writable(self, session: DocumentSession) -> None:
        """The partly kept last block will be overwritten past `keep`: own it, unhashed."""
        last = session.block_table[-1]
        if self.pool.ref_counts[last] == 1:
            self.pool.forget(last)
            return
        (copy,) = self.pool.allocate_or_raise(1, f"copy-on-write for {session.key}")
        self.kv.copy_block(last, copy)
        self.pool.release([last])
        session.block_table[-1] = copy

    def _adopt_shared_blocks(self, session: DocumentSession, prompt: list[int]) -> None:
        """Extend `session` with full blocks other sessions already computed."""
        bs = self.block_size
        if session.num_tokens % bs:
            return
        parent = session.block_hashes[-1] if session.block_hashes else ROOT_HASH
        # Never adopt the block holding the last prompt token: it must be computed for logits.
        while session.num_tokens + bs <= len(prompt) - 1:
            start = session.num_tokens
            chunk = prompt[start : start + bs]
            digest = block_hash(parent, chunk)
            block = self.pool.lookup(digest)
            if block is None:
                return
            session.block_table.append(block)
            session.block_hashes.append(digest)
            session.tokens.extend(chunk)
            parent = digest

    def reserve(self, session: DocumentSession, total_tokens: int) -> None:
        """Make sure `session` has blocks for `total_tokens` tokens."""
        needed = (total_tokens + self.block_size - 1) // self.block_size - len(session.block_table)
        if needed > 0:
            last = session.block_table[-1] if session.block_table else None
            session.block_table.extend(self.pool.allocate_or_raise(needed, f"document {session.key!r}", after=last))

    def commit(self, session: DocumentSession, new_tokens: list[int]) -> None:
        """Record tokens whose K/V were just written; hash blocks they complete."""
        bs = self.block_size
        session.tokens.extend(new_tokens)
        session.last_used = time.monotonic()
        while len(session.block_hashes) < session.num_tokens // bs:
            index = len(session.block_hashes)
            parent = session.block_hashes[-1] if index else ROOT_HASH
            digest = block_hash(parent, session.tokens[index * bs : (index + 1) * bs])
            self.pool.register(session.block_table[index], digest)
            session.block_hashes.append(digest)

    def release(self, session: DocumentSession, keep_cached: bool = True) -> None:
        """Give every block back; hashed ones stay findable until evicted, unless keep_cached=False."""
        self.pool.release(session.block_table, keep_hashes=keep_cached)
        session.block_table.clear()
        session.block_hashes.clear()
        session.tokens.clear()
