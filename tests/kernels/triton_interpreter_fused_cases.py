"""The fused elementwise kernels under TRITON_INTERPRET=1 on CPU tensors (see
test_triton_interpreter.py), small shapes, fp32 and fp16."""

import os

import pytest
import torch

from .fused_ops_cases import layer_norm_case, rms_norm_case, rope_store_case, silu_mul_case

pytestmark = pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1", reason="needs TRITON_INTERPRET=1")
DTYPES = [torch.float32, torch.float16]


@pytest.fixture(autouse=True)
def forced(monkeypatch):
    monkeypatch.setenv("LOOPCODER_KERNELS", "triton")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("shape", [(1, 64), (5, 48), (3, 1000)])
def test_rms_norm(shape, residual, dtype):
    rms_norm_case(*shape, dtype, "cpu", residual)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("shape", [(1, 64), (5, 48), (3, 1000)])
def test_layer_norm(shape, residual, dtype):
    layer_norm_case(*shape, dtype, "cpu", residual)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fused_projection", [False, True])
def test_silu_mul(fused_projection, dtype):
    silu_mul_case(3, 1500, dtype, "cpu", fused_projection)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("heads", [(2, 2), (10, 2), (5, 1)])
def test_rope_store(heads, dtype):
    rope_store_case([0, 5, 6, 7, 30, 2], *heads, 16, dtype, "cpu")


def exact_e4m3_rows(rows: int, k: int, dtype: torch.dtype) -> torch.Tensor:
    """Rows whose per-token quantization is exact: e4m3 codes with a 448 in each row, times
    a power of two. The interpreter (triton 3.9) rounds float32 -> e4m3 wrongly where the
    mantissa carries into the next binade (127.04 -> 64, not 128); the compiled kernels
    use the hardware conversion, tested on the GPU with random rows."""
    codes = (torch.randn(rows, k) * 100).clamp(-448, 448).to(torch.float8_e4m3fn).float()
    codes[:, 0] = 448.0
    return (codes * torch.tensor([2.0**-j for j in range(rows)])[:, None]).to(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", [
    (48, 80, False, None), (40, 300, True, None), (64, 96, False, dict(block_n=16, block_k=32)),
    (32, 2048, True, dict(split_k=4, block_k=128)),
])
def test_fp8_gemv(case, dtype):
    from loopcoder.kernels.fp8_linear import GemvLaunch, fp8_gemv, fp8_linear, fp8_linear_ref, quantize_fp8

    n, k, with_bias, launch = case
    x = exact_e4m3_rows(1, k, dtype)
    weight = quantize_fp8(torch.randn(n, k))
    bias = torch.randn(n).to(dtype) if with_bias else None
    expected = fp8_linear_ref(x, weight, bias)
    torch.testing.assert_close(fp8_gemv(x, weight, bias, GemvLaunch(**launch) if launch else None), expected,
                               rtol=1e-3, atol=1e-2)
    torch.testing.assert_close(fp8_linear(x, weight, bias), expected, rtol=1e-3, atol=1e-2)


@pytest.mark.parametrize("dtype", DTYPES)
def test_fp8_linear_quantizes_rows_for_scaled_mm(dtype):
    """Several rows: rows quantized by the Triton kernel, then _scaled_mm (bf16 products)."""
    from loopcoder.kernels.fp8_linear import fp8_linear, fp8_linear_ref, quantize_fp8

    x = exact_e4m3_rows(5, 96, dtype)
    weight = quantize_fp8(torch.randn(32, 96))
    torch.testing.assert_close(fp8_linear(x, weight), fp8_linear_ref(x, weight), rtol=1e-2, atol=0.5)


def test_quantize_rows():
    from loopcoder.kernels.fp8_linear import quantize_rows, quantize_rows_ref

    x = exact_e4m3_rows(5, 1300, torch.float32)
    x[2] = 0.0
    codes, scales = quantize_rows(x)
    ref_codes, ref_scales = quantize_rows_ref(x)
    assert torch.equal(scales, ref_scales)
    assert torch.equal(codes.float(), ref_codes.float())
