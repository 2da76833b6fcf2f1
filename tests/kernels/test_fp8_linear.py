"""FP8 linear layers (kernels/fp8_linear.py): quantization round trips, the torch._scaled_mm
path and the Triton decode GEMV equal the float32 reference of the same quantized
operands (on CPU, where torch implements it, and on a GPU), errors, and a model quantized
to fp8 end to end. The kernels under Triton's interpreter: triton_interpreter_fused_cases.py."""

import pytest
import torch

from loopcoder.engine.errors import InvalidRequestError
from loopcoder.engine.quantization import QuantLinear, quantize_model, weight_bytes
from loopcoder.kernels.fp8_linear import (
    E4M3_MAX, Fp8Weight, GemvLaunch, dequantize_fp8, fp8_gemv, fp8_linear, fp8_linear_ref, quantize_fp8, quantize_rows,
    quantize_rows_ref, scaled_mm_blocker,
)

from ..engine.helpers import tiny_engine

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def rel(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def test_weights_round_trip_within_e4m3_precision():
    w = torch.randn(64, 96) * torch.logspace(-3, 1, 64)[:, None]  # rows of very different scales
    q = quantize_fp8(w)
    assert q.q.dtype == torch.float8_e4m3fn and q.scale.shape == (1, 64)
    assert q.q.float().abs().amax(dim=1).sub(E4M3_MAX).abs().max() == 0  # each row uses the whole range
    assert rel(dequantize_fp8(q), w) < 0.04  # 3 mantissa bits: ~2^-4 relative per element at worst


def test_zero_rows_stay_zero_and_finite():
    w = torch.zeros(16, 32)
    w[3] = 1.0
    out = fp8_linear(torch.randn(2, 32), quantize_fp8(w))
    assert torch.isfinite(out).all() and (out[:, [0, 1, 2]] == 0).all()


@pytest.mark.parametrize("rows", [1, 5, 33])
def test_scaled_mm_equals_the_reference_on_cpu(rows):
    if scaled_mm_blocker(torch.zeros(1, 128), quantize_fp8(torch.ones(16, 128))) is not None:
        pytest.skip("this torch's CPU _scaled_mm takes no row-wise scales: the reference serves")
    gen = torch.Generator().manual_seed(rows)
    x = torch.randn(rows, 128, generator=gen).to(torch.bfloat16)
    w = quantize_fp8(torch.randn(48, 128, generator=gen) * 0.02)
    bias = torch.randn(48, generator=gen).to(torch.bfloat16)
    fast, ref = fp8_linear(x, w, bias), fp8_linear_ref(x, w, bias)
    assert fast.dtype == torch.bfloat16 and fast.shape == (rows, 48)
    assert rel(fast, ref) < 1e-2  # same codes and scales; only the float32 accumulation order differs
    # Against unquantized activations: e4m3 rounding of x costs a few percent.
    assert rel(fast, torch.nn.functional.linear(x.float(), dequantize_fp8(w), bias.float())) < 0.08


def test_mismatched_inputs_are_refused():
    with pytest.raises(ValueError, match="inputs"):
        fp8_linear(torch.randn(2, 64), quantize_fp8(torch.randn(16, 32)))


@torch.no_grad()
def test_a_model_quantized_to_fp8_stays_close_to_bf16():
    """A tiny random Loop model (weights 10x a checkpoint's scale, so errors compound over
    its 2 x 2 layers): the logits move but mostly keep their argmax."""
    engine = tiny_engine("iquestloopcoder")
    model = engine.model.to(torch.bfloat16)
    ids = list(range(1, 40))
    before_bytes = weight_bytes(model)
    reference = model.compute_logits(model(torch.tensor(ids), *_meta(engine, ids)))
    quantize_model(model, "fp8", torch.bfloat16)
    linears = [m for m in model.modules() if isinstance(m, QuantLinear)]
    assert linears and all(isinstance(m.weight_q, Fp8Weight) for m in linears)
    assert isinstance(model.lm_head, torch.nn.Linear)  # the LM head keeps the model's dtype
    assert weight_bytes(model) < before_bytes
    logits = model.compute_logits(model(torch.tensor(ids), *_meta(engine, ids)))
    assert rel(logits, reference) < 0.2
    assert (logits.argmax(-1) == reference.argmax(-1)).float().mean() > 0.7


def _meta(engine, ids):
    from loopcoder.kernels.attention import AttentionMetadata
    from loopcoder.engine.kv_cache import KVCache

    kv = KVCache(engine.model_config, 1, len(ids), torch.bfloat16, "cpu")
    return AttentionMetadata.build([[0]], [0], [len(ids)], len(ids)), kv


def test_unknown_quantization_is_refused():
    with pytest.raises(InvalidRequestError, match="fp8"):
        quantize_model(tiny_engine("llama").model, "fp4", torch.bfloat16)


@cuda
@pytest.mark.parametrize("shape", [(5120, 5120), (1024, 5120), (27648, 5120), (5120, 27648)])
@pytest.mark.parametrize("rows", [1, 8, 32, 512])
def test_scaled_mm_on_cuda_at_real_shapes(shape, rows):
    if torch.cuda.get_device_capability() < (8, 9):
        pytest.skip("FP8 matmuls need compute capability 8.9+")
    gen = torch.Generator(device="cuda").manual_seed(rows)
    x = torch.randn(rows, shape[1], device="cuda", generator=gen).to(torch.bfloat16)
    w_bf16 = (torch.randn(*shape, device="cuda", generator=gen) * 0.02).to(torch.bfloat16)
    w = quantize_fp8(w_bf16)
    fast = fp8_linear(x, w)
    assert rel(fast, fp8_linear_ref(x, w)) < 1e-2
    # Against bf16 weights and activations: e4m3's 3 mantissa bits on both operands.
    assert rel(fast, torch.nn.functional.linear(x, w_bf16)) < 0.06


@cuda
@pytest.mark.parametrize("shape", [(7168, 5120), (1024, 5120), (55296, 5120), (5120, 27648), (100, 48)])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_gemv_kernel_on_cuda_at_real_shapes(shape, dtype):
    """One decode row takes the one-kernel path: equal to the reference up to float32 sums."""
    if torch.cuda.get_device_capability() < (8, 9):
        pytest.skip("e4m3 conversions need compute capability 8.9+")
    gen = torch.Generator(device="cuda").manual_seed(shape[0])
    x = torch.randn(1, shape[1], device="cuda", generator=gen).to(dtype)
    w = quantize_fp8(torch.randn(*shape, device="cuda", generator=gen) * 0.02)
    bias = torch.randn(shape[0], device="cuda", generator=gen).to(dtype)
    for launch in (None, GemvLaunch(split_k=4, block_k=128), GemvLaunch(block_n=16, num_warps=8)):
        assert rel(fp8_gemv(x, w, bias, launch), fp8_linear_ref(x, w, bias)) < 5e-3, launch
    assert rel(fp8_linear(x, w, bias), fp8_linear_ref(x, w, bias)) < 5e-3  # the dispatcher takes it


@cuda
def test_row_quantization_kernel_equals_torch_on_cuda():
    x = torch.randn(37, 5000, device="cuda").to(torch.bfloat16) * 3
    x[4] = 0  # an all-zero row keeps a finite scale
    codes, scales = quantize_rows(x)
    ref_codes, ref_scales = quantize_rows_ref(x)
    torch.testing.assert_close(scales, ref_scales, rtol=1e-6, atol=0)
    assert (codes.float() == ref_codes.float()).float().mean() > 0.999  # float32 division, rounded alike


def test_gemv_kernel_takes_one_row():
    with pytest.raises(ValueError, match="one row"):
        fp8_gemv(torch.randn(2, 32), quantize_fp8(torch.randn(16, 32)))
