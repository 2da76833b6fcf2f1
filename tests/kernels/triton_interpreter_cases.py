"""The Triton kernels on CPU tensors under TRITON_INTERPRET=1, at small shapes.

Run by test_triton_interpreter.py in a fresh pytest process (Triton picks compiled or
interpreted when triton.language is first imported). fp32 and fp16 only: the
interpreter's tl.dot multiplies bf16 inputs as raw 16-bit integers (triton 3.9.0).
"""

import os

import pytest
import torch

from loopcoder.kernels import attention
from loopcoder.kernels.attention import (
    DecodeLaunch,
    PrefillLaunch,
    loop_attention,
    loop_decode_attention_triton,
    loop_prefill_attention_triton,
    paged_attention,
    paged_attention_ref,
    paged_decode_attention_triton,
    paged_prefill_attention_triton,
)

from .helpers import REL_ERROR, decode_case, extend_case, loop_expected, rel_error

pytestmark = pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1", reason="needs TRITON_INTERPRET=1")

CONTEXTS = [1, 4, 5, 23]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("heads", [(2, 2), (10, 2)])
@pytest.mark.parametrize("window", [None, 1, 6])
@pytest.mark.parametrize("splits", [1, 3])
def test_paged_decode(dtype, heads, window, splits):
    case = decode_case(CONTEXTS, *heads, 16, dtype, block_size=4, seed=splits)
    out = torch.full_like(case.q, float("nan"))
    paged_decode_attention_triton(case.q, *case.caches, case.meta.block_tables, case.meta.positions, max(CONTEXTS),
                                  case.scale, window, launch=DecodeLaunch(num_splits=splits, block_n=16), out=out)
    wide = case.upcast()
    assert rel_error(out, paged_attention_ref(wide.q, *wide.caches, case.meta, case.scale, window)) < REL_ERROR[dtype]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("heads", [(2, 2), (10, 2)])
@pytest.mark.parametrize("window", [1, 6])
@pytest.mark.parametrize("splits", [1, 3])
def test_loop_decode(dtype, heads, window, splits):
    case = decode_case(CONTEXTS, *heads, 16, dtype, block_size=4, num_caches=4, seed=splits)
    out = torch.full_like(case.q, float("nan"))
    loop_decode_attention_triton(
        case.q, tuple(case.caches[:2]), tuple(case.caches[2:]), case.meta.block_tables, case.meta.positions,
        max(CONTEXTS), case.scale, window, case.gate_weight, case.gate_bias,
        launch=DecodeLaunch(num_splits=splits, block_n=16), out=out,
    )
    assert rel_error(out, loop_expected(case, window)) < REL_ERROR[dtype]


def test_forced_triton_dispatches(monkeypatch):
    monkeypatch.setenv("LOOPCODER_KERNELS", "triton")
    calls = []
    original = attention.paged_decode_attention_triton
    monkeypatch.setattr(attention, "paged_decode_attention_triton", lambda *a, **k: calls.append(1) or original(*a, **k))
    case = decode_case([3, 20], 4, 2, 16, torch.float32, block_size=4, num_caches=4)
    out = paged_attention(case.q, *case.caches[:2], case.meta, case.scale, 5)
    assert calls == [1]
    assert rel_error(out, paged_attention_ref(case.q, *case.caches[:2], case.meta, case.scale, 5)) < 1e-5
    mixed = loop_attention(case.q, tuple(case.caches[:2]), tuple(case.caches[2:]), case.meta, case.scale, 5,
                           case.gate_weight, case.gate_bias)
    assert rel_error(mixed, loop_expected(case, 5)) < 1e-5


def test_automatic_choice_never_interprets(monkeypatch):
    monkeypatch.delenv("LOOPCODER_KERNELS", raising=False)
    case = decode_case([3, 20], 4, 2, 16, torch.float32, block_size=4)
    monkeypatch.setattr(attention, "paged_decode_attention_triton", lambda *a, **k: pytest.fail("interpreted"))
    paged_attention(case.q, *case.caches, case.meta, case.scale)


# --- prefill / extend --------------------------------------------------------------------

# Per batch: (context_lens, query_lens). A fresh odd-length prefill, a chunk on a cached
# prefix, and a mixed batch where single rows (decode-like) sit among chunks.
PREFILL = ([23], [23])
CHUNK = ([37], [12])
MIXED = ([1, 23, 37, 9, 40], [1, 23, 12, 1, 5])
SMALL_TILES = PrefillLaunch(block_m=16, block_n=16)  # several tiles and key blocks at these lengths
GQA = [(2, 2), (8, 2), (10, 2), (8, 1)]  # n_rep 1, 4, 5, 8


def prefill_expected(case, window):
    wide = case.upcast()
    return paged_attention_ref(wide.q, *wide.caches, case.meta, case.scale, window)


def run_prefill(case, window, launch=SMALL_TILES):
    out = torch.full_like(case.q, float("nan"))
    return paged_prefill_attention_triton(case.q, *case.caches, case.meta, case.scale, window, launch=launch, out=out)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("heads", GQA)
@pytest.mark.parametrize("window", [None, 1, 6, 40])  # 6 straddles 4-token pages; 40 leaves whole blocks inside
def test_prefill_mixed_batch(dtype, heads, window):
    case = extend_case(*MIXED, *heads, 16, dtype, block_size=4, seed=heads[0])
    assert rel_error(run_prefill(case, window), prefill_expected(case, window)) < REL_ERROR[dtype]


@pytest.mark.parametrize("batch", [PREFILL, CHUNK])
@pytest.mark.parametrize("head_dim", [16, 32, 64])
@pytest.mark.parametrize("window", [None, 6])
def test_prefill_head_dims(batch, head_dim, window):
    case = extend_case(*batch, 10, 2, head_dim, torch.float32, block_size=4)
    assert rel_error(run_prefill(case, window), prefill_expected(case, window)) < REL_ERROR[torch.float32]


@pytest.mark.parametrize("block_size", [1, 2, 8, 32])
@pytest.mark.parametrize("window", [None, 7])
def test_prefill_block_sizes(block_size, window):
    case = extend_case(*MIXED, 8, 2, 16, torch.float32, block_size=block_size)
    assert rel_error(run_prefill(case, window), prefill_expected(case, window)) < REL_ERROR[torch.float32]


@pytest.mark.parametrize("launch", [PrefillLaunch(block_m=32, block_n=16), PrefillLaunch(block_m=16, block_n=32),
                                    PrefillLaunch()])
@pytest.mark.parametrize("window", [None, 5])
def test_prefill_tile_shapes(launch, window):
    """Tiles larger than some sequences, key blocks larger than a window, and the defaults."""
    case = extend_case(*MIXED, 10, 2, 16, torch.float16, block_size=4)
    assert rel_error(run_prefill(case, window, launch), prefill_expected(case, window)) < REL_ERROR[torch.float16]


def test_prefill_reads_only_the_window():
    """Pages wholly before the first query's window hold NaN: a kernel that read them would return NaN."""
    window, block_size = 6, 4
    case = extend_case([50], [9], 8, 2, 16, torch.float32, block_size=block_size)
    first_key = 50 - 9 - window + 1  # the first query's window starts here
    for page in case.meta.block_tables_host[0][: first_key // block_size]:
        for cache in case.caches:
            cache[page] = float("nan")
    assert rel_error(run_prefill(case, window), prefill_expected(case, window)) < 1e-5


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("heads", [(2, 2), (10, 2), (8, 1)])
@pytest.mark.parametrize("window", [1, 6])
def test_loop_prefill(dtype, heads, window):
    case = extend_case(*MIXED, *heads, 16, dtype, block_size=4, num_caches=4, seed=heads[0])
    out = torch.full_like(case.q, float("nan"))
    loop_prefill_attention_triton(case.q, tuple(case.caches[:2]), tuple(case.caches[2:]), case.meta, case.scale,
                                  window, case.gate_weight, case.gate_bias, launch=SMALL_TILES, out=out)
    assert rel_error(out, loop_expected(case, window)) < REL_ERROR[dtype]


@pytest.mark.parametrize("head_dim", [32, 64])
def test_loop_prefill_chunk_head_dims(head_dim):
    case = extend_case(*CHUNK, 10, 2, head_dim, torch.float32, block_size=4, num_caches=4)
    out = loop_prefill_attention_triton(case.q, tuple(case.caches[:2]), tuple(case.caches[2:]), case.meta,
                                        case.scale, 6, case.gate_weight, case.gate_bias)
    assert rel_error(out, loop_expected(case, 6)) < REL_ERROR[torch.float32]


def test_forced_triton_dispatches_prefill(monkeypatch):
    monkeypatch.setenv("LOOPCODER_KERNELS", "triton")
    calls = []
    for name in ("paged_prefill_attention_triton", "loop_prefill_attention_triton"):
        original = getattr(attention, name)
        monkeypatch.setattr(attention, name,
                            lambda *a, _f=original, _n=name, **k: calls.append(_n) or _f(*a, **k))
    case = extend_case([9, 20], [4, 20], 4, 2, 16, torch.float32, block_size=4, num_caches=4)
    out = paged_attention(case.q, *case.caches[:2], case.meta, case.scale, 5)
    assert rel_error(out, paged_attention_ref(case.q, *case.caches[:2], case.meta, case.scale, 5)) < 1e-5
    mixed = loop_attention(case.q, tuple(case.caches[:2]), tuple(case.caches[2:]), case.meta, case.scale, 5,
                           case.gate_weight, case.gate_bias)
    assert rel_error(mixed, loop_expected(case, 5)) < 1e-5
    assert calls == ["paged_prefill_attention_triton", "loop_prefill_attention_triton"]


# --- prefill split-K (a short chunk on a long context) -------------------------------------

LONG_CHUNK = ([70, 9, 45], [6, 9, 1])  # chunks on long prefixes beside a fresh prefill and a single row


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("splits", [2, 3, 8])  # 8: more splits than some sequences have key blocks
@pytest.mark.parametrize("window", [None, 6, 40])
def test_prefill_split_keys(dtype, splits, window):
    case = extend_case(*LONG_CHUNK, 10, 2, 16, dtype, block_size=4, seed=splits)
    launch = PrefillLaunch(block_m=16, block_n=16, num_splits=splits)
    assert rel_error(run_prefill(case, window, launch), prefill_expected(case, window)) < REL_ERROR[dtype]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("splits", [2, 5])
@pytest.mark.parametrize("window", [1, 6])
def test_loop_prefill_split_keys(dtype, splits, window):
    case = extend_case(*LONG_CHUNK, 10, 2, 16, dtype, block_size=4, num_caches=4, seed=splits)
    out = torch.full_like(case.q, float("nan"))
    loop_prefill_attention_triton(case.q, tuple(case.caches[:2]), tuple(case.caches[2:]), case.meta, case.scale,
                                  window, case.gate_weight, case.gate_bias,
                                  launch=PrefillLaunch(block_m=16, block_n=16, num_splits=splits), out=out)
    assert rel_error(out, loop_expected(case, window)) < REL_ERROR[dtype]


def test_split_keys_read_only_the_window():
    """With splits too, pages wholly before the first query's window are never read."""
    window, block_size = 6, 4
    case = extend_case([80], [5], 8, 2, 16, torch.float32, block_size=block_size)
    first_key = 80 - 5 - window + 1
    for page in case.meta.block_tables_host[0][: first_key // block_size]:
        for cache in case.caches:
            cache[page] = float("nan")
    launch = PrefillLaunch(block_m=16, block_n=16, num_splits=4)
    assert rel_error(run_prefill(case, window, launch), prefill_expected(case, window)) < 1e-5
