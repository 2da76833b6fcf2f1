"""kernels/attention/cpu.py: the C decode-attention kernel against the float64 reference, on
every instruction set this CPU has, for the shapes the engine runs (GQA, windows, scattered
pages, contexts that cut chunks unevenly) and for bad block tables."""

from __future__ import annotations

import pytest
import torch

from loopcoder.kernels.attention import cpu as C
from loopcoder.kernels.attention import paged_attention_ref

from .helpers import REL_ERROR, decode_case, extend_case, rel_error

needs_kernel = pytest.mark.skipif(not C.supported_cpu_attention_isas(), reason=C.cpu_attention_status())


@pytest.fixture
def isa_restored():
    before = C._kernel.isa() if C._kernel is not None else None
    yield
    if before is not None:
        C.set_cpu_attention_isa(before)


@needs_kernel
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("window", [None, 7, 300])
@pytest.mark.parametrize("heads", [(9, 3, 64), (4, 4, 32), (16, 2, 128)])
def test_matches_the_reference_on_every_instruction_set(dtype, window, heads, isa_restored):
    # 1 key, one chunk, a chunk and a bit, several chunks: every split the kernel makes.
    case = decode_case([1, 200, 257, 1100], *heads, dtype, block_size=16)
    ref = paged_attention_ref(*(lambda c: (c.q, *c.caches))(case.upcast()), case.meta, case.scale, window)
    for isa in C.supported_cpu_attention_isas():
        C.set_cpu_attention_isa(isa)
        out = C.paged_decode_attention_cpu(case.q, *case.caches, case.meta, case.scale, window)
        assert out.dtype == dtype and out.shape == case.q.shape
        assert rel_error(out, ref) < REL_ERROR[dtype], (isa, rel_error(out, ref))


@needs_kernel
def test_block_size_one_and_large_scores():
    case = decode_case([40, 3], 8, 2, 16, torch.float32, block_size=1)
    q = case.q * 30  # softmax far from uniform: the maximum must be subtracted
    ref = paged_attention_ref(q.double(), *(c.double() for c in case.caches), case.meta, case.scale)
    out = C.paged_decode_attention_cpu(q, *case.caches, case.meta, case.scale)
    assert torch.isfinite(out).all() and rel_error(out, ref) < 1e-5


def test_blockers_name_what_they_refuse():
    case = decode_case([5], 4, 2, 16, torch.float32, block_size=4)
    if C._kernel is None:
        assert C.cpu_decode_blocker(case.q, *case.caches, case.meta) == C._ext.missing
        return
    assert C.cpu_decode_blocker(case.q, *case.caches, case.meta) is None
    prefill = extend_case([8], [3], 4, 2, 16, torch.float32, block_size=4)
    assert "not a decode step" in C.cpu_decode_blocker(prefill.q, *prefill.caches, prefill.meta)
    half = case.caches[0].half()
    assert "float32 or bfloat16" in C.cpu_decode_blocker(case.q, half, half, case.meta)
    assert "float32 or bfloat16" in C.cpu_decode_blocker(case.q.bfloat16(), *case.caches, case.meta)


@needs_kernel
def test_a_table_past_the_cache_is_refused_not_read():
    case = decode_case([20], 4, 2, 16, torch.float32, block_size=4)
    case.meta.block_tables[0, 0] = case.caches[0].shape[0] + 5
    with pytest.raises(ValueError, match="names block"):
        C.paged_decode_attention_cpu(case.q, *case.caches, case.meta, case.scale)
    case.meta.positions[0] = 10_000
    case.meta.block_tables[0, 0] = 0
    with pytest.raises(ValueError, match="past its"):
        C.paged_decode_attention_cpu(case.q, *case.caches, case.meta, case.scale)
