"""paged_attention against a naive per-query loop, over odd shapes, block sizes and windows;
the Triton decode and prefill kernels against the reference on CUDA (under Triton's
interpreter: triton_interpreter_cases.py); the dispatcher's choice between them."""

import math
import random

import pytest
import torch

from loopcoder.kernels import attention
from loopcoder.kernels.attention import (
    AttentionMetadata,
    DecodeLaunch,
    PrefillLaunch,
    common,
    loop_attention_ref,
    loop_prefill_attention_triton,
    paged_attention,
    paged_attention_ref,
    paged_decode_attention_triton,
    paged_prefill_attention_triton,
)
from loopcoder.kernels.dispatch import KernelUnavailableError
from loopcoder.kernels.kv_store import store_kv

from .helpers import REL_ERROR, cuda, decode_case, extend_case, rel_error

TOLERANCE = {torch.float32: 1e-5, torch.bfloat16: 2e-2}


def naive(q, k, v, q_positions, window):
    """q: (n_q, Hq, D) at absolute q_positions; k, v: (n_k, Hkv, D) at positions 0..n_k-1."""
    n_rep = q.shape[1] // k.shape[1]
    out = torch.zeros_like(q, dtype=torch.float32)
    for i, t in enumerate(q_positions):
        lo = 0 if window is None else max(0, t - window + 1)
        for h in range(q.shape[1]):
            keys = k[lo : t + 1, h // n_rep].float()
            scores = keys @ q[i, h].float() / math.sqrt(q.shape[2])
            out[i, h] = torch.softmax(scores, 0) @ v[lo : t + 1, h // n_rep].float()
    return out


def scattered_cache(ks, vs, block_size, num_blocks, dtype, order=None):
    """Write each sequence's full K/V into randomly chosen blocks (or blocks taken from `order`)."""
    hkv, d = ks[0].shape[1:]
    k_cache = torch.zeros(num_blocks, block_size, hkv, d, dtype=dtype)
    v_cache = torch.zeros_like(k_cache)
    free = list(range(num_blocks))
    random.Random(0).shuffle(free)
    if order is not None:
        free = list(reversed(order))
    tables = []
    for k, v in zip(ks, vs):
        n = (k.shape[0] + block_size - 1) // block_size
        table = [free.pop() for _ in range(n)]
        tables.append(table)
        meta = AttentionMetadata.build([table], [0], [k.shape[0]], block_size)
        store_kv(k, v, k_cache, v_cache, meta.slot_mapping)
    return k_cache, v_cache, tables


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("block_size", [1, 3, 16])
@pytest.mark.parametrize("window", [None, 1, 5])
@pytest.mark.parametrize("heads", [(4, 4), (6, 2), (3, 1)])
def test_paged_matches_naive(dtype, block_size, window, heads):
    torch.manual_seed(0)
    hq, hkv, d = *heads, 8
    ctx_lens, q_lens = [13, 1, 7], [5, 1, 7]  # a chunk on a prefix, a decode, a fresh prefill
    ks = [torch.randn(n, hkv, d, dtype=dtype) for n in ctx_lens]
    vs = [torch.randn(n, hkv, d, dtype=dtype) for n in ctx_lens]
    qs = [torch.randn(n, hq, d, dtype=dtype) for n in q_lens]
    k_cache, v_cache, tables = scattered_cache(ks, vs, block_size, 64, dtype)
    starts = [c - q for c, q in zip(ctx_lens, q_lens)]
    meta = AttentionMetadata.build(tables, starts, q_lens, block_size)
    out = paged_attention(torch.cat(qs), k_cache, v_cache, meta, d**-0.5, window)
    expected = torch.cat(
        [naive(q, k, v, range(s, s + q.shape[0]), window) for q, k, v, s in zip(qs, ks, vs, starts)]
    )
    torch.testing.assert_close(out.float(), expected, atol=TOLERANCE[dtype], rtol=TOLERANCE[dtype])


def test_window_reads_exactly_w_keys_including_self():
    """With values one-hot by position, the output weights show which keys were read."""
    n, window = 10, 3
    k = torch.zeros(n, 1, n)  # all scores equal: uniform weights over visible keys
    v = torch.eye(n).unsqueeze(1)  # value of key j is e_j
    q = torch.zeros(n, 1, n)
    k_cache, v_cache, tables = scattered_cache([k], [v], 4, 8, torch.float32)
    meta = AttentionMetadata.build(tables, [0], [n], 4)
    out = paged_attention(q, k_cache, v_cache, meta, 1.0, window)[:, 0]  # (n, n)
    for t in range(n):
        visible = [j for j in range(n) if out[t, j] > 0]
        assert visible == list(range(max(0, t - window + 1), t + 1))


def test_bad_shapes_raise():
    meta = AttentionMetadata.build([[0]], [0], [2], 4)
    k_cache = torch.zeros(1, 4, 2, 8)
    with pytest.raises(ValueError, match="head layout"):
        paged_attention(torch.zeros(2, 3, 8), k_cache, k_cache, meta, 1.0)
    with pytest.raises(ValueError, match="window"):
        paged_attention(torch.zeros(2, 4, 8), k_cache, k_cache, meta, 1.0, window=0)
    with pytest.raises(ValueError, match="store_kv"):
        store_kv(torch.zeros(3, 2, 8), torch.zeros(3, 2, 8), k_cache, k_cache, meta.slot_mapping)


@pytest.mark.parametrize("order", [[0, 1, 2, 3, 4], [9, 2, 3, 4, 5], [1, 2, 7, 3, 4], [4, 3, 2, 1, 0]])
@pytest.mark.parametrize("window", [None, 6])
def test_contiguous_and_mixed_block_tables(order, window):
    """Consecutive pages are read as a slice, others gathered: both give the same answer."""
    torch.manual_seed(1)
    k, v, q = torch.randn(18, 2, 8), torch.randn(18, 2, 8), torch.randn(3, 4, 8)
    k_cache, v_cache, tables = scattered_cache([k], [v], 4, 12, torch.float32, order=order)
    assert tables == [order]
    meta = AttentionMetadata.build(tables, [15], [3], 4)
    out = paged_attention(q, k_cache, v_cache, meta, 8**-0.5, window)
    torch.testing.assert_close(out, naive(q, k, v, range(15, 18), window), atol=1e-5, rtol=1e-5)


# --- dispatch ---------------------------------------------------------------------------


@pytest.mark.parametrize("kernel_mode", [None, "torch"], indirect=True)
def test_cpu_decode_takes_the_c_kernel_unless_torch_is_forced(kernel_mode, spy):
    case = decode_case([5, 17], 4, 2, 16, torch.float32, block_size=4)
    ref_calls, c_calls = spy(attention, "paged_attention_ref"), spy(attention, "paged_decode_attention_cpu")
    out = paged_attention(case.q, *case.caches, case.meta, case.scale, 3)
    c_kernel = kernel_mode is None and attention.cpu_decode_blocker(case.q, *case.caches, case.meta) is None
    assert (c_calls, ref_calls) == ((["paged_decode_attention_cpu"], []) if c_kernel else ([], ["paged_attention_ref"]))
    torch.testing.assert_close(out, paged_attention_ref(case.q, *case.caches, case.meta, case.scale, 3),
                               rtol=1e-5, atol=1e-5)


def test_forced_triton_without_triton_raises(monkeypatch):
    monkeypatch.setenv("LOOPCODER_KERNELS", "triton")
    monkeypatch.setattr("loopcoder.kernels.dispatch.triton_import_error", lambda: "No module named 'triton'")
    case = decode_case([5, 17], 4, 2, 16, torch.float32, block_size=4)
    with pytest.raises(KernelUnavailableError, match="LOOPCODER_KERNELS=triton.*paged_attention.*triton is not importable"):
        paged_attention(case.q, *case.caches, case.meta, case.scale)


def test_forced_triton_on_cpu_tensors_raises(monkeypatch):
    """Whether triton is installed or not: CPU tensors outside the interpreter cannot run it."""
    monkeypatch.setenv("LOOPCODER_KERNELS", "triton")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    case = decode_case([5], 4, 2, 16, torch.float32, block_size=4)
    with pytest.raises(KernelUnavailableError, match="LOOPCODER_KERNELS=triton"):
        paged_attention(case.q, *case.caches, case.meta, case.scale)


@pytest.mark.parametrize("kernel_mode", [None, "torch"], indirect=True)
def test_cpu_prefill_takes_the_reference(kernel_mode, spy):
    case = extend_case([9, 20], [4, 20], 4, 2, 16, torch.float32, block_size=4)
    calls = spy(attention, "paged_attention_ref")
    out = paged_attention(case.q, *case.caches, case.meta, case.scale)
    assert calls == ["paged_attention_ref"]
    assert torch.equal(out, paged_attention_ref(case.q, *case.caches, case.meta, case.scale))


def test_forced_triton_prefill_on_cpu_tensors_raises(monkeypatch):
    """Prefill rows take the Triton prefill kernel when forced, so CPU tensors raise as decode does."""
    monkeypatch.setenv("LOOPCODER_KERNELS", "triton")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    case = extend_case([9], [4], 4, 2, 16, torch.float32, block_size=4)
    with pytest.raises(KernelUnavailableError, match="LOOPCODER_KERNELS=triton"):
        paged_attention(case.q, *case.caches, case.meta, case.scale)


def test_unknown_mode_raises(monkeypatch):
    monkeypatch.setenv("LOOPCODER_KERNELS", "cuda")
    case = decode_case([5], 4, 2, 16, torch.float32, block_size=4)
    with pytest.raises(KernelUnavailableError, match="expected 'torch' or 'triton'"):
        paged_attention(case.q, *case.caches, case.meta, case.scale)


@pytest.mark.parametrize("programs,span,splits", [(8, 32768, 64), (64, 32768, 8), (256, 32768, 2), (8, 2048, 32),
                                                  (8, 64, 1), (8, 20, 1), (1024, 32768, 1), (16, 4099, 32)])
def test_split_count(monkeypatch, programs, span, splits):
    """About four programs per SM (132 here), a power of two, at least one 64-key tile a split."""
    monkeypatch.setattr(common, "multiprocessors", lambda device: 132)
    assert common.decode_splits(programs, span, torch.device("cuda"), 64) == splits
    assert common.decode_splits(programs, span, torch.device("cpu"), 64) == 1


# --- CUDA -------------------------------------------------------------------------------

RAGGED = [1, 15, 16, 17, 64, 333, 1000, 4099]  # page boundaries at 16, odd lengths, a long one


@cuda
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("head_dim", [64, 128])
@pytest.mark.parametrize("n_rep", [1, 4, 5, 8])
@pytest.mark.parametrize("window", [None, 1, 20])  # 20 keys straddle two or three 16-token pages
@pytest.mark.parametrize("splits", [1, 7, None])
def test_cuda_kernel_matches_reference(dtype, head_dim, n_rep, window, splits):
    case = decode_case(RAGGED, 2 * n_rep, 2, head_dim, dtype, device="cuda", seed=n_rep)
    out = torch.full_like(case.q, float("nan"))
    paged_decode_attention_triton(case.q, *case.caches, case.meta.block_tables, case.meta.positions, max(RAGGED),
                                  case.scale, window, launch=DecodeLaunch(num_splits=splits), out=out)
    wide = case.upcast()
    ref = paged_attention_ref(wide.q, *wide.caches, case.meta, case.scale, window)
    assert rel_error(out, ref) < REL_ERROR[dtype]


@cuda
@pytest.mark.parametrize("block_size", [1, 5, 16, 32])
@pytest.mark.parametrize("window", [None, 7, 64])
def test_cuda_kernel_block_sizes(block_size, window):
    case = decode_case([1, 6, 64, 65, 700], 40, 8, 128, torch.bfloat16, block_size=block_size, device="cuda")
    out = paged_decode_attention_triton(case.q, *case.caches, case.meta.block_tables, case.meta.positions, 700,
                                        case.scale, window)
    wide = case.upcast()
    assert rel_error(out, paged_attention_ref(wide.q, *wide.caches, case.meta, case.scale, window)) < 1e-2


@cuda
def test_cuda_kernel_fp16():
    case = decode_case(RAGGED, 10, 2, 128, torch.float16, device="cuda")
    out = paged_decode_attention_triton(case.q, *case.caches, case.meta.block_tables, case.meta.positions,
                                        max(RAGGED), case.scale, 33)
    wide = case.upcast()
    assert rel_error(out, paged_attention_ref(wide.q, *wide.caches, case.meta, case.scale, 33)) < REL_ERROR[torch.float16]


@cuda
@pytest.mark.parametrize("kernel_mode", [None, "torch", "triton"], indirect=True)
def test_cuda_dispatch(kernel_mode, spy):
    calls = spy(attention, "paged_decode_attention_triton")
    case = decode_case([7, 300], 8, 2, 64, torch.bfloat16, device="cuda")
    paged_attention(case.q, *case.caches, case.meta, case.scale)
    assert calls == ([] if kernel_mode == "torch" else ["paged_decode_attention_triton"])
    # head_dim 8 has no kernel: automatic falls back, forced raises.
    small = decode_case([7, 300], 8, 2, 8, torch.bfloat16, device="cuda")
    if kernel_mode == "triton":
        with pytest.raises(KernelUnavailableError, match="head_dim 8"):
            paged_attention(small.q, *small.caches, small.meta, small.scale)
    else:
        paged_attention(small.q, *small.caches, small.meta, small.scale)


# --- CUDA: prefill / extend ---------------------------------------------------------------

# (context_lens, query_lens): a cold prefill; chunks on cached prefixes; a mixed batch where
# single rows and chunks share a step, across page boundaries at 16.
PREFILL_BATCHES = {
    "prefill": ([4099], [4099]),
    "chunks": ([3000, 2600, 700], [512, 1, 700]),
    "mixed": ([1, 15, 16, 17, 64, 333, 1000, 2049], [1, 15, 1, 17, 30, 1, 1000, 512]),
}


def prefill_reference(case, window):
    wide = case.upcast()
    return paged_attention_ref(wide.q, *wide.caches, case.meta, case.scale, window)


@cuda
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("n_rep", [1, 4, 5, 8])
@pytest.mark.parametrize("window", [None, 64])
@pytest.mark.parametrize("batch", list(PREFILL_BATCHES))
def test_cuda_prefill_matches_reference(dtype, n_rep, window, batch):
    case = extend_case(*PREFILL_BATCHES[batch], 2 * n_rep, 2, 128, dtype, device="cuda", seed=n_rep)
    out = torch.full_like(case.q, float("nan"))
    paged_prefill_attention_triton(case.q, *case.caches, case.meta, case.scale, window, out=out)
    assert rel_error(out, prefill_reference(case, window)) < REL_ERROR[dtype]


@cuda
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("window", [None, 64])
def test_cuda_prefill_loop_shape(dtype, window):
    """The 40B-Loop layer's shape: 40 query heads over 8 KV heads, head_dim 128."""
    case = extend_case([2500, 1200, 7], [2500, 512, 1], 40, 8, 128, dtype, device="cuda")
    out = paged_prefill_attention_triton(case.q, *case.caches, case.meta, case.scale, window)
    assert rel_error(out, prefill_reference(case, window)) < REL_ERROR[dtype]


@cuda
@pytest.mark.parametrize("block_size", [1, 8, 16, 64])
@pytest.mark.parametrize("window", [None, 7, 64])
def test_cuda_prefill_block_sizes(block_size, window):
    case = extend_case([6, 65, 700, 1500], [6, 64, 1, 700], 40, 8, 128, torch.bfloat16, block_size=block_size,
                       device="cuda")
    out = paged_prefill_attention_triton(case.q, *case.caches, case.meta, case.scale, window)
    assert rel_error(out, prefill_reference(case, window)) < REL_ERROR[torch.bfloat16]


@cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("head_dim", [16, 32, 64, 256])
def test_cuda_prefill_head_dims(dtype, head_dim):
    case = extend_case(*PREFILL_BATCHES["mixed"], 10, 2, head_dim, dtype, device="cuda")
    out = paged_prefill_attention_triton(case.q, *case.caches, case.meta, case.scale, 33)
    assert rel_error(out, prefill_reference(case, 33)) < REL_ERROR[dtype]


@cuda
@pytest.mark.parametrize("kernel_mode", [None, "torch", "triton"], indirect=True)
def test_cuda_prefill_dispatch(kernel_mode, spy):
    calls = spy(attention, "paged_prefill_attention_triton")
    case = extend_case([7, 300], [7, 100], 8, 2, 64, torch.bfloat16, device="cuda")
    out = paged_attention(case.q, *case.caches, case.meta, case.scale)
    assert len(calls) == (0 if kernel_mode == "torch" else 1)
    assert rel_error(out, prefill_reference(case, None)) < REL_ERROR[torch.bfloat16]


@cuda
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("splits", [None, 1, 4, 16])  # None: prefill_splits() decides
@pytest.mark.parametrize("window", [None, 64])
def test_prefill_split_keys_on_cuda(dtype, splits, window):
    """A keystroke's re-prefill: a 257-row chunk on a long cached prefix (40/8 heads, D 128), and a
    fresh prefill beside it; split-K over the keys gives the reference's answer."""
    case = extend_case([8449, 700], [257, 700], 40, 8, 128, dtype, device="cuda", seed=3)
    out = paged_prefill_attention_triton(case.q, *case.caches, case.meta, case.scale, window,
                                         launch=PrefillLaunch(num_splits=splits))
    wide = case.upcast(torch.float32)
    assert rel_error(out, paged_attention_ref(wide.q, *wide.caches, case.meta, case.scale, window)) < REL_ERROR[dtype]


@cuda
@pytest.mark.parametrize("splits", [None, 4])
def test_loop_prefill_split_keys_on_cuda(splits):
    case = extend_case([8449, 700], [257, 700], 40, 8, 128, torch.bfloat16, num_caches=4, device="cuda", seed=4)
    out = loop_prefill_attention_triton(case.q, tuple(case.caches[:2]), tuple(case.caches[2:]), case.meta,
                                        case.scale, 64, case.gate_weight, case.gate_bias,
                                        launch=PrefillLaunch(num_splits=splits))
    wide = case.upcast(torch.float32)
    want = loop_attention_ref(wide.q, tuple(wide.caches[:2]), tuple(wide.caches[2:]), case.meta, case.scale, 64,
                              wide.gate_weight, wide.gate_bias)
    assert rel_error(out, want) < REL_ERROR[torch.bfloat16]
