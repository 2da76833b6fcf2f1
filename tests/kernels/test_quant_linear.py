"""Weight-only int8/int4 linear: the packed CPU kernels equal the dequantize-then-matmul reference."""

import pytest
import torch

from loopcoder.kernels.quant_linear import dequantize, quant_linear, quant_linear_ref, quantize_int4, quantize_int8

TOLERANCE = {torch.float32: 1e-5, torch.bfloat16: 3e-2}


@pytest.mark.parametrize("shape", [(48, 64), (576, 576), (7, 96)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("kind", ["int8", "int4"])
@pytest.mark.parametrize("rows", [3, 300])  # decode-sized and prefill-chunk-sized inputs
def test_fast_path_matches_reference(shape, dtype, kind, rows):
    torch.manual_seed(0)
    w = torch.randn(*shape) * 0.05
    weight = quantize_int8(w, dtype) if kind == "int8" else quantize_int4(w, dtype)
    x = torch.randn(rows, shape[1], dtype=dtype)
    bias = torch.randn(shape[0], dtype=dtype)
    out, ref = quant_linear(x, weight, bias), quant_linear_ref(x, weight, bias)
    tol = TOLERANCE[dtype] * ref.abs().max().item()
    torch.testing.assert_close(out.float(), ref.float(), atol=tol, rtol=0)


def test_int4_recovers_a_q4_1_grid_exactly():
    """Weights on a GGUF Q4_1 grid (w = d*q + m per 32 inputs) come back to the same grid."""
    torch.manual_seed(1)
    n, k = 16, 64
    d = torch.rand(n, k // 32, 1) * 0.01 + 0.001
    m = torch.randn(n, k // 32, 1) * 0.05
    codes = torch.randint(0, 16, (n, k // 32, 32))
    codes[..., 0], codes[..., 1] = 0, 15  # Q4_1 blocks always span their full range
    w = (codes * d + m).reshape(n, k)
    weight = quantize_int4(w, torch.float32)
    assert torch.equal(weight.codes().long(), codes.reshape(n, k))
    torch.testing.assert_close(dequantize(weight), w, atol=1e-6, rtol=0)


def test_quantization_error_is_half_a_step():
    torch.manual_seed(2)
    w = torch.randn(64, 128)
    int8 = quantize_int8(w, torch.float32)
    assert ((dequantize(int8) - w).abs() <= 0.501 * int8.scale[:, None]).all()
    int4 = quantize_int4(w, torch.float32)
    step = int4.scale_zero[..., 0].T.repeat_interleave(32, dim=1)  # (N, K)
    assert ((dequantize(int4) - w).abs() <= 0.501 * step + 1e-6).all()


def test_shape_errors():
    with pytest.raises(ValueError, match="multiple of the group"):
        quantize_int4(torch.randn(4, 40), torch.float32)
    with pytest.raises(ValueError, match="inputs"):
        quant_linear(torch.randn(2, 10), quantize_int8(torch.randn(4, 12), torch.float32))
