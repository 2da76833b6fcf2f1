"""RMSNorm and LayerNorm (+ residual), silu * up and RoPE with the K/V store: the references on CPU, the
Triton kernels against them on a GPU at real shapes (the interpreter runs them on CPU:
triton_interpreter_fused_cases.py)."""

import pytest
import torch

from loopcoder.kernels import layernorm, rmsnorm, rope, swiglu

from .fused_ops_cases import layer_norm_case, rms_norm_case, rope_store_case, silu_mul_case

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_rms_norm_reference_is_the_hf_formula_after_the_residual_add():
    x, r = torch.randn(3, 8), torch.randn(3, 8)
    w = torch.rand(8)
    normed, summed = rmsnorm.rms_norm(x, w, 1e-6, residual=r)
    s = x + r
    torch.testing.assert_close(summed, s)
    torch.testing.assert_close(normed, w * s / torch.sqrt(s.pow(2).mean(-1, keepdim=True) + 1e-6))
    torch.testing.assert_close(rmsnorm.rms_norm(s, w, 1e-6), normed)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_layer_norm_reference_is_torch_layer_norm_after_the_residual_add(dtype):
    """As HF's nn.LayerNorm (StarCoder2) computes it: the residual sum rounded to the dtype, then
    (s - mean) / sqrt(var + eps) * weight + bias."""
    x, r = (2 + torch.randn(3, 8)).to(dtype), torch.randn(3, 8).to(dtype)
    w, b = torch.rand(8).to(dtype), torch.randn(8).to(dtype)
    normed, summed = layernorm.layer_norm(x, w, b, 1e-5, residual=r)
    s = x + r
    torch.testing.assert_close(summed, s, atol=0, rtol=0)
    hf = torch.nn.LayerNorm(8, eps=1e-5, dtype=dtype)
    with torch.no_grad():
        hf.weight.copy_(w)
        hf.bias.copy_(b)
    torch.testing.assert_close(normed, hf(s).detach(), atol=0, rtol=0)
    f = s.float()
    by_hand = (f - f.mean(-1, keepdim=True)) / torch.sqrt(f.var(-1, unbiased=False, keepdim=True) + 1e-5) * w.float() + b.float()
    torch.testing.assert_close(normed.float(), by_hand, **({} if dtype == torch.float32 else dict(atol=2e-2, rtol=2e-2)))
    torch.testing.assert_close(layernorm.layer_norm(s, w, b, 1e-5), normed)


def test_rope_reference_rotates_half_split_pairs_and_stores():
    q, k, v = torch.randn(2, 3, 4), torch.randn(2, 1, 4), torch.randn(2, 1, 4)
    angle = torch.tensor([[0.0, 0.0], [0.5, 0.25]])  # (positions 0, 1) x frequency
    cos, sin = torch.cat((angle, angle), -1).cos(), torch.cat((angle, angle), -1).sin()
    caches = torch.zeros(2, 2, 1, 4), torch.zeros(2, 2, 1, 4)
    out = rope.rope_store(q, k, v, torch.tensor([0, 1]), cos, sin, *caches, torch.tensor([3, 0]))
    torch.testing.assert_close(out[0], q[0])  # position 0: no rotation
    x1, x2 = q[1, :, :2], q[1, :, 2:]
    c, s = angle[1].cos(), angle[1].sin()
    torch.testing.assert_close(out[1], torch.cat((x1 * c - x2 * s, x2 * c + x1 * s), -1))
    torch.testing.assert_close(caches[0].view(-1, 1, 4)[3], k[0])
    torch.testing.assert_close(caches[1].view(-1, 1, 4)[0], v[1])


@pytest.mark.parametrize("call", [
    lambda: rmsnorm.rms_norm(torch.zeros(2, 8), torch.ones(4), 1e-5),
    lambda: rmsnorm.rms_norm(torch.zeros(2, 8), torch.ones(8), 1e-5, residual=torch.zeros(3, 8)),
    lambda: layernorm.layer_norm(torch.zeros(2, 8), torch.ones(8), torch.zeros(4), 1e-5),
    lambda: layernorm.layer_norm(torch.zeros(2, 8), torch.ones(8), torch.zeros(8), 1e-5, residual=torch.zeros(2, 4)),
    lambda: swiglu.silu_mul(torch.zeros(2, 8), torch.zeros(2, 4)),
    lambda: rope.rope_store(torch.zeros(2, 4, 8), torch.zeros(2, 2, 8), torch.zeros(2, 2, 8), torch.zeros(3, dtype=torch.int64),
                            torch.zeros(9, 8), torch.zeros(9, 8), torch.zeros(4, 4, 2, 8), torch.zeros(4, 4, 2, 8),
                            torch.zeros(2, dtype=torch.int64)),
])
def test_mismatched_shapes_are_refused(call):
    with pytest.raises(ValueError, match="shapes"):
        call()


def test_forced_triton_without_cuda_says_why(monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("CUDA is present")
    monkeypatch.setenv("LOOPCODER_KERNELS", "triton")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    from loopcoder.kernels.dispatch import KernelUnavailableError

    with pytest.raises(KernelUnavailableError, match="rms_norm"):
        rmsnorm.rms_norm(torch.zeros(2, 8), torch.ones(8), 1e-5)
    with pytest.raises(KernelUnavailableError, match="layer_norm"):
        layernorm.layer_norm(torch.zeros(2, 8), torch.ones(8), torch.zeros(8), 1e-5)


@cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("shape", [(1, 5120), (7, 5120), (300, 4096), (3, 576)])
def test_rms_norm_on_cuda(shape, residual, dtype):
    rms_norm_case(*shape, dtype, "cuda", residual)


@cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("shape", [(1, 3072), (7, 6144), (300, 4608), (3, 576)])  # StarCoder2 3B/15B/7B widths
def test_layer_norm_on_cuda(shape, residual, dtype):
    layer_norm_case(*shape, dtype, "cuda", residual)


@cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("fused_projection", [False, True])
@pytest.mark.parametrize("rows", [1, 33, 512])
def test_silu_mul_on_cuda(rows, fused_projection, dtype):
    silu_mul_case(rows, 27648, dtype, "cuda", fused_projection)


@cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("heads", [(40, 8), (32, 8), (8, 8), (9, 3)])
@pytest.mark.parametrize("head_dim", [64, 128])
def test_rope_store_on_cuda(heads, head_dim, dtype):
    rope_store_case([0, 1, 15, 16, 17, 4095, 77, 300] * 3, *heads, head_dim, dtype, "cuda", block_size=16)
