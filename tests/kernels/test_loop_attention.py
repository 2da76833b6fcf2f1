"""The Loop layer's fused attention (g·A + (1−g)·B): reference, dispatch, and the Triton
decode and prefill kernels against the reference on CUDA (under Triton's interpreter:
triton_interpreter_cases.py)."""

import pytest
import torch

from loopcoder.kernels import attention as op
from loopcoder.kernels.attention import (
    AttentionMetadata,
    DecodeLaunch,
    loop_attention,
    loop_attention_ref,
    loop_decode_attention_triton,
    loop_gate,
    loop_prefill_attention_triton,
    paged_attention_ref,
)
from loopcoder.kernels.dispatch import KernelUnavailableError

from .helpers import REL_ERROR, cuda, decode_case, extend_case, loop_expected, rel_error


def old_loop_mix(case, window):
    """The loop layer's attention as engine/models/loopcoder.py wrote it before the fused op
    (on the CPU, where `paged_attention` then ran the reference; it now takes the C decode kernel)."""
    a = paged_attention_ref(case.q, *case.caches[:2], case.meta, case.scale)
    b = paged_attention_ref(case.q, *case.caches[2:], case.meta, case.scale, window)
    g = torch.sigmoid((case.q * case.gate_weight).sum(-1) + case.gate_bias).unsqueeze(-1).to(a.dtype)
    return g * a + (1 - g) * b


def run_ref(case, window):
    return loop_attention_ref(case.q, tuple(case.caches[:2]), tuple(case.caches[2:]), case.meta, case.scale,
                              window, case.gate_weight, case.gate_bias)


def run_dispatch(case, window):
    return loop_attention(case.q, tuple(case.caches[:2]), tuple(case.caches[2:]), case.meta, case.scale,
                          window, case.gate_weight, case.gate_bias)


def run_triton(case, window, max_context, launch=DecodeLaunch(), out=None):
    return loop_decode_attention_triton(
        case.q, tuple(case.caches[:2]), tuple(case.caches[2:]), case.meta.block_tables, case.meta.positions,
        max_context, case.scale, window, case.gate_weight, case.gate_bias, launch=launch, out=out,
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("window", [1, 5])
def test_reference_is_the_old_loop_layer_bit_for_bit(monkeypatch, dtype, window):
    monkeypatch.delenv("LOOPCODER_KERNELS", raising=False)
    case = decode_case([3, 9, 30], 6, 2, 16, dtype, block_size=4, num_caches=4)
    old = old_loop_mix(case, window)
    assert torch.equal(run_ref(case, window), old)
    assert torch.equal(run_dispatch(case, window), old)


def test_reference_on_prefill_rows():
    """Several query rows per sequence (a prefill chunk) through the same reference."""
    case = decode_case([12], 4, 2, 16, torch.float32, block_size=4, num_caches=4)
    meta = AttentionMetadata.build(case.meta.block_tables_host, [8], [4], 4)
    q = torch.randn(4, 4, 16)
    out = loop_attention(q, tuple(case.caches[:2]), tuple(case.caches[2:]), meta, 0.25, 3, case.gate_weight, case.gate_bias)
    a = paged_attention_ref(q, *case.caches[:2], meta, 0.25)
    b = paged_attention_ref(q, *case.caches[2:], meta, 0.25, 3)
    g = loop_gate(q, case.gate_weight, case.gate_bias)
    assert torch.equal(out, g * a + (1 - g) * b)


def test_gate_one_takes_a_gate_zero_takes_b():
    case = decode_case([7, 20], 4, 2, 16, torch.float32, block_size=4, num_caches=4)
    case.gate_weight.zero_()
    for bias, branch in ((1e4, paged_attention_ref(case.q, *case.caches[:2], case.meta, case.scale)),
                         (-1e4, paged_attention_ref(case.q, *case.caches[2:], case.meta, case.scale, 3))):
        case.gate_bias.fill_(bias)
        torch.testing.assert_close(run_ref(case, 3), branch)


def test_forced_triton_without_triton_raises(monkeypatch):
    monkeypatch.setenv("LOOPCODER_KERNELS", "triton")
    monkeypatch.setattr("loopcoder.kernels.dispatch.triton_import_error", lambda: "No module named 'triton'")
    case = decode_case([5, 17], 4, 2, 16, torch.float32, block_size=4, num_caches=4)
    with pytest.raises(KernelUnavailableError, match="LOOPCODER_KERNELS=triton.*loop_attention.*not importable"):
        run_dispatch(case, 3)


def test_forced_torch_takes_the_reference(monkeypatch):
    monkeypatch.setenv("LOOPCODER_KERNELS", "torch")
    case = decode_case([5, 17], 4, 2, 16, torch.float32, block_size=4, num_caches=4)
    assert torch.equal(run_dispatch(case, 3), run_ref(case, 3))


def test_bad_window_raises():
    case = decode_case([5], 4, 2, 16, torch.float32, block_size=4, num_caches=4)
    with pytest.raises(ValueError, match="window"):
        run_dispatch(case, 0)


# --- CUDA -------------------------------------------------------------------------------

RAGGED = [1, 15, 16, 17, 64, 65, 333, 4099]


@cuda
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("head_dim", [64, 128])
@pytest.mark.parametrize("n_rep", [1, 4, 5, 8])
@pytest.mark.parametrize("window", [1, 20, 64])
@pytest.mark.parametrize("splits", [1, 7, None])
def test_cuda_kernel_matches_reference(dtype, head_dim, n_rep, window, splits):
    case = decode_case(RAGGED, 2 * n_rep, 2, head_dim, dtype, num_caches=4, device="cuda", seed=n_rep)
    out = torch.full_like(case.q, float("nan"))
    run_triton(case, window, max(RAGGED), DecodeLaunch(num_splits=splits), out)
    assert rel_error(out, loop_expected(case, window)) < REL_ERROR[dtype]


@cuda
@pytest.mark.parametrize("block_size", [1, 5, 32])
def test_cuda_kernel_block_sizes(block_size):
    case = decode_case([1, 6, 64, 65, 700], 40, 8, 128, torch.bfloat16, block_size=block_size, num_caches=4, device="cuda")
    assert rel_error(run_triton(case, 64, 700), loop_expected(case, 64)) < REL_ERROR[torch.bfloat16]


@cuda
@pytest.mark.parametrize("kernel_mode", [None, "torch", "triton"], indirect=True)
def test_cuda_dispatch(kernel_mode, spy):
    calls = spy(op, "loop_decode_attention_triton")
    case = decode_case([7, 300], 10, 2, 64, torch.bfloat16, num_caches=4, device="cuda")
    out = run_dispatch(case, 64)
    assert len(calls) == (0 if kernel_mode == "torch" else 1)
    assert rel_error(out, loop_expected(case, 64)) < REL_ERROR[torch.bfloat16]


# --- CUDA: prefill / extend ---------------------------------------------------------------

PREFILL_BATCHES = {
    "prefill": ([3001], [3001]),
    "chunks": ([3000, 700], [512, 700]),
    "mixed": ([1, 15, 16, 17, 64, 333, 2049], [1, 15, 1, 17, 30, 1, 512]),
}


def run_prefill_triton(case, window, out=None):
    return loop_prefill_attention_triton(case.q, tuple(case.caches[:2]), tuple(case.caches[2:]), case.meta,
                                         case.scale, window, case.gate_weight, case.gate_bias, out=out)


@cuda
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("n_rep", [1, 4, 5, 8])
@pytest.mark.parametrize("window", [1, 64])
@pytest.mark.parametrize("batch", list(PREFILL_BATCHES))
def test_cuda_prefill_kernel_matches_reference(dtype, n_rep, window, batch):
    case = extend_case(*PREFILL_BATCHES[batch], 2 * n_rep, 2, 128, dtype, num_caches=4, device="cuda", seed=n_rep)
    out = torch.full_like(case.q, float("nan"))
    run_prefill_triton(case, window, out)
    assert rel_error(out, loop_expected(case, window)) < REL_ERROR[dtype]


@cuda
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("block_size", [4, 16, 64])
def test_cuda_prefill_loop_shape(dtype, block_size):
    """The 40B-Loop layer: 40 query heads over 8 KV heads, head_dim 128, window 64."""
    case = extend_case([2500, 1200, 7], [2500, 512, 1], 40, 8, 128, dtype, block_size=block_size, num_caches=4,
                       device="cuda")
    assert rel_error(run_prefill_triton(case, 64), loop_expected(case, 64)) < REL_ERROR[dtype]


@cuda
@pytest.mark.parametrize("kernel_mode", [None, "torch", "triton"], indirect=True)
def test_cuda_prefill_dispatch(kernel_mode, spy):
    """Also head_dim 64 and a window of 20 (straddling 16-token pages)."""
    calls = spy(op, "loop_prefill_attention_triton")
    case = extend_case([7, 300], [7, 100], 10, 2, 64, torch.bfloat16, num_caches=4, device="cuda")
    out = run_dispatch(case, 20)
    assert len(calls) == (0 if kernel_mode == "torch" else 1)
    assert rel_error(out, loop_expected(case, 20)) < REL_ERROR[torch.bfloat16]
