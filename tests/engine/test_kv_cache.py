"""BlockPool bookkeeping: references, hashes, LRU reuse and eviction."""

import pytest
import torch

from loopcoder.engine.errors import KVCacheOutOfMemoryError
from loopcoder.engine.kv_cache import ROOT_HASH, BlockPool, CacheConfig, block_hash

from .helpers import tiny_config, tiny_engine


def test_allocate_release_and_no_room():
    pool = BlockPool(4)
    a = pool.allocate(3)
    assert len(set(a)) == 3 and pool.num_available == 1
    assert pool.allocate(2) is None  # no room is None, not an exception
    pool.release(a)
    assert pool.num_available == 4
    with pytest.raises(ValueError, match="released more often"):
        pool.release([a[0]])


def test_hashed_blocks_wait_in_lru_and_are_found_again():
    pool = BlockPool(3)
    (b,) = pool.allocate(1)
    digest = block_hash(ROOT_HASH, [1, 2, 3, 4])
    pool.register(b, digest)
    pool.release([b])
    assert pool.num_cached == 1
    assert pool.lookup(digest) == b and pool.ref_counts[b] == 1 and pool.num_cached == 0


def test_eviction_takes_least_recently_released_first():
    pool = BlockPool(2)
    blocks = pool.allocate(2)
    digests = [block_hash(ROOT_HASH, [i]) for i in range(2)]
    for b, d in zip(blocks, digests):
        pool.register(b, d)
    pool.release([blocks[1]])
    pool.release([blocks[0]])  # blocks[1] is now the oldest
    (fresh,) = pool.allocate(1)
    assert fresh == blocks[1] and pool.evictions == 1
    assert pool.lookup(digests[1]) is None and pool.lookup(digests[0]) == blocks[0]


def test_forget_refuses_shared_blocks():
    pool = BlockPool(2)
    (b,) = pool.allocate(1)
    pool.register(b, b"x")
    assert pool.lookup(b"x") == b
    with pytest.raises(ValueError, match="shared"):
        pool.forget(b)


def test_hash_chains_over_prefix():
    assert block_hash(block_hash(ROOT_HASH, [1]), [2]) != block_hash(block_hash(ROOT_HASH, [3]), [2])


def test_budget_too_small_for_one_block():
    with pytest.raises(KVCacheOutOfMemoryError, match="holds no block"):
        CacheConfig.from_budget(tiny_config(), 100, 16, torch.float32)


def test_kv_budget_short_takes_pages_from_idle_documents():
    engine = tiny_engine("llama", block_size=4, kv_budget_bytes=10 * 4 * tiny_config().kv_bytes_per_token(4))
    assert engine.pool.num_blocks == 10
    ok = list(range(1, 30))
    before = engine.sync("a", ok)
    engine.sync("b", list(range(2, 40)))  # needs 10 blocks, 2 are free: open but idle "a" gives its pages up
    assert engine.demotions == 1 and not engine.sessions["a"].block_table
    torch.testing.assert_close(engine.sync("a", ok), before)  # recomputed, the same


def test_kv_budget_exhausted_raises_and_loses_nothing():
    engine = tiny_engine("llama", block_size=4, kv_budget_bytes=10 * 4 * tiny_config().kv_bytes_per_token(4))
    ok = list(range(1, 30))
    before = engine.sync("a", ok)
    table = list(engine.sessions["a"].block_table)
    with pytest.raises(KVCacheOutOfMemoryError, match="KV cache full"):
        engine.sync("b", list(range(2, 50)))  # 12 blocks: more than the pool, so nobody's pages are taken
    assert engine.sessions["a"].block_table == table and engine.demotions == 0
    torch.testing.assert_close(engine.sync("a", ok), before)  # document a is intact
    assert engine.sync("a", ok + [5]).shape == before.shape  # and the engine goes on working
    engine.close("b")
    engine.close("a")
    engine.sync("b", list(range(2, 40)))  # fits once a is closed: its blocks are evicted
    assert engine.pool.evictions > 0


def test_closed_document_is_recovered_from_hashes():
    engine = tiny_engine("iquestloopcoder", block_size=4)
    doc = list(range(1, 42))
    engine.prefill("a", doc)
    engine.close("a")
    usage = engine.prefill("a", doc)
    assert usage.cached_tokens == 40  # every full block but the one holding the last token


def test_close_without_keeping_cached_recomputes_from_scratch():
    engine = tiny_engine("iquestloopcoder", block_size=4)
    doc = list(range(1, 42))
    engine.prefill("a", doc)
    engine.prefill("b", doc[:20])  # shares five blocks with "a"
    engine.close("a", keep_cached=False)
    assert engine.prefill("a", doc).cached_tokens == 16  # only the (hashed) blocks "b" still holds survive
    engine.close("a", keep_cached=False)
    engine.close("b", keep_cached=False)
    assert engine.prefill("a", doc).cached_tokens == 0
    assert engine.pool.num_cached == 0


def test_allocate_after_keeps_pages_consecutive():
    pool = BlockPool(8)
    assert pool.allocate(3) == [0, 1, 2]
    assert pool.allocate(1) == [3]
    pool.release([2])  # an edit cut the first sequence back by one block
    assert pool.allocate(2, after=1) == [2, 4]  # 3 is taken: fall back to any free block
    pool.register(3, b"h")
    pool.release([3])  # hashed and unreferenced: cached, not free
    assert pool.allocate(1, after=2) == [3]  # taken anyway, its hash evicted
    assert pool.evictions == 1 and pool.lookup(b"h") is None


def test_engine_keeps_a_typed_document_contiguous():
    engine = tiny_engine("llama", block_size=4)
    doc = list(range(1, 50))
    for typed in range(5):
        doc = doc[:30] + [7] * typed + doc[30:]
        engine.sync("d", doc)
        table = engine.sessions["d"].block_table
        assert table == list(range(table[0], table[0] + len(table)))
