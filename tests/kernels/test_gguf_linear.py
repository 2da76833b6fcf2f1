"""kernels/gguf_linear.py: GGUF blocks computed as stored.

The gguf package's numpy dequantizer is the oracle for what the blocks hold: the torch
reference and the C kernel's dequantizer must equal it exactly, and the C kernel's
products must equal the float product up to its int8 activations, on every instruction set
this CPU has (scalar, AVX2, AVX-512 VNNI), for one row (decode) and several (batches).
"""

from __future__ import annotations

import os
import subprocess
import sys

import gguf
import numpy as np
import pytest
import torch

from loopcoder.kernels import gguf_linear as G
from loopcoder.kernels import gguf_triton as T

from .gguf_helpers import quantize, random_blocks

TYPES = list(G.GGUF_TYPES)
needs_kernel = pytest.mark.skipif(not G.cpu_kernel_available(), reason=G.cpu_kernel_status())


@pytest.fixture
def isa_restored():
    before = G._kernel.isa() if G.cpu_kernel_available() else None
    yield
    if before is not None:
        G.set_cpu_isa(before)


def weight(name: str, n: int, k: int, seed: int = 0) -> tuple[G.GGUFWeight, np.ndarray]:
    blocks = random_blocks(name, n, k, np.random.default_rng(seed))
    return G.GGUFWeight(torch.from_numpy(blocks), G.GGUF_TYPES[name], k), blocks


@pytest.mark.parametrize("name", TYPES)
def test_reference_dequantizes_as_the_gguf_package(name):
    w, blocks = weight(name, 24, 512)
    expected = gguf.quants.dequantize(blocks, gguf.GGMLQuantizationType[name])
    np.testing.assert_array_equal(G.dequantize_ref(w).numpy(), expected)


@needs_kernel
@pytest.mark.parametrize("name", TYPES)
def test_kernel_dequantizes_as_the_gguf_package(name):
    w, blocks = weight(name, 24, 512, seed=1)
    expected = gguf.quants.dequantize(blocks, gguf.GGMLQuantizationType[name])
    np.testing.assert_array_equal(G.dequantize(w).numpy(), expected)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


@needs_kernel
@pytest.mark.parametrize("name", TYPES)
@pytest.mark.parametrize("rows", [1, 3, 6])
def test_kernel_product_on_every_instruction_set(name, rows, isa_restored):
    w, _ = weight(name, 40, 512, seed=2)  # 40 outputs: two full tiles of 16 and a partial one
    x = torch.randn(rows, 512, generator=torch.Generator().manual_seed(3))
    exact = x.double() @ G.dequantize_ref(w).double().T
    outs = {}
    for isa in G.supported_cpu_isas():
        G.set_cpu_isa(isa)
        outs[isa] = G.gguf_linear(x, w)
        # int8 activations per 32: about 0.5% of the product's norm on random data.
        assert rel_err(outs[isa], exact) < 0.02, isa
    for isa, out in outs.items():  # the same integer sums: the instruction sets agree to float rounding
        torch.testing.assert_close(out, outs["scalar"], rtol=1e-5, atol=1e-5 * float(exact.abs().max()), msg=isa)


@needs_kernel
@pytest.mark.parametrize("name", ["Q4_1", "Q8_0", "Q6_K"])
def test_a_rows_result_does_not_depend_on_its_batch(name, isa_restored):
    """Decode rows batched together (documents sharing a step) get, bit for bit, what each
    gets alone, on every instruction set."""
    w, _ = weight(name, 40, 512, seed=7)
    x = torch.randn(7, 512, generator=torch.Generator().manual_seed(8))
    for isa in G.supported_cpu_isas():
        G.set_cpu_isa(isa)
        together = G.gguf_linear(x, w)
        for i in range(x.shape[0]):
            assert torch.equal(together[i], G.gguf_linear(x[i:i + 1], w)[0]), (isa, i)


@needs_kernel
def test_rows_past_the_gemm_threshold_are_exact_to_the_blocks():
    w, _ = weight("Q4_K", 32, 512, seed=4)
    x = torch.randn(G.GEMM_MIN_ROWS + 3, 512)
    torch.testing.assert_close(G.gguf_linear(x, w), x @ G.dequantize_ref(w).T, rtol=1e-4, atol=1e-4)


@needs_kernel
@pytest.mark.parametrize("name", ["Q4_1", "Q6_K"])
def test_bfloat16_activations_and_bias(name):
    w, _ = weight(name, 48, 768, seed=5)
    x = torch.randn(2, 3, 768)
    bias = torch.randn(48)
    exact = (x.double() @ G.dequantize_ref(w).double().T) + bias.double()
    out = G.gguf_linear(x.bfloat16(), w, bias.bfloat16())
    assert out.dtype == torch.bfloat16 and out.shape == (2, 3, 48)
    assert rel_err(out.float(), exact) < 0.03


@pytest.mark.parametrize("name", TYPES)
def test_products_of_quantized_real_weights(name):
    """Blocks quantized from float weights (llama.cpp's layout): the product through the
    blocks is the product of what they hold, on the kernel or the reference."""
    rng = np.random.default_rng(6)
    wf = (rng.standard_normal((64, 512)) * 0.05).astype(np.float32)
    w = G.GGUFWeight(torch.from_numpy(quantize(wf, name)), G.GGUF_TYPES[name], 512)
    x = torch.randn(1, 512)
    held = G.dequantize_ref(w)
    assert rel_err(held, torch.from_numpy(wf)) < 0.1  # a 4-bit type holds the weights to about 8%
    assert rel_err(G.gguf_linear(x, w), x @ held.T) < 0.02


def test_bad_blocks_are_refused():
    t = G.GGUF_TYPES["Q4_K"]
    with pytest.raises(ValueError, match="multiple of 256"):
        G.GGUFWeight(torch.zeros(4, 144, dtype=torch.uint8), t, 200)
    with pytest.raises(ValueError, match=r"\(N, 144\) uint8"):
        G.GGUFWeight(torch.zeros(4, 100, dtype=torch.uint8), t, 256)
    with pytest.raises(ValueError, match=r"\(N, 144\) uint8"):
        G.GGUFWeight(torch.zeros(4, 144, dtype=torch.int16), t, 256)
    w, _ = weight("Q8_0", 8, 64)
    with pytest.raises(ValueError, match="x has 32 inputs, the weight 64"):
        G.gguf_linear(torch.randn(1, 32), w)


@needs_kernel
def test_kernel_refuses_what_it_cannot_compute(isa_restored):
    with pytest.raises(ValueError, match="type id 99"):
        G._kernel.matmul(99, 0, 1, 32, 0, 0, 1, 0, 0, 1)
    with pytest.raises(ValueError, match="multiple of 256"):
        G._kernel.dequantize(12, 0, 1, 32, 0, 1)
    with pytest.raises(ValueError, match="not one this CPU has"):
        G.set_cpu_isa("avx1024")


def test_without_the_kernel_the_reference_computes(tmp_path):
    """LOOPCODER_CPU_KERNELS=0 (as on a machine without a compiler): the same results
    through torch, and the status line says why."""
    code = (
        "import torch; from loopcoder.kernels import gguf_linear as G\n"
        "assert not G.cpu_kernel_available(); print(G.cpu_kernel_status())\n"
        "w = G.GGUFWeight(torch.zeros(16, 20, dtype=torch.uint8), G.GGUF_TYPES['Q4_1'], 32)\n"
        "print(float(G.gguf_linear(torch.ones(1, 32), w).abs().sum()))\n"
    )
    env = {**os.environ, "LOOPCODER_CPU_KERNELS": "0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert "turned off by LOOPCODER_CPU_KERNELS=0" in out and out.strip().endswith("0.0")


# -- the GPU path (kernels/gguf_triton.py; its kernels per type: test_gguf_triton.py) ----------

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_cpu_tensors_stay_on_the_cpu_path(spy, monkeypatch):
    """Automatic dispatch never takes Triton for CPU tensors, and says why it could not."""
    monkeypatch.delenv("LOOPCODER_KERNELS", raising=False)
    calls = spy(T, "gguf_matmul")
    w, _ = weight("Q4_K", 16, 256)
    x = torch.randn(1, 256)
    assert rel_err(G.gguf_linear(x, w), x @ G.dequantize_ref(w).T) < 0.02
    assert calls == []
    assert "CUDA tensors" in T.gguf_triton_blocker(x.bfloat16(), w)


@cuda
def test_the_dispatcher_takes_triton_for_cuda_tensors(spy, monkeypatch):
    monkeypatch.delenv("LOOPCODER_KERNELS", raising=False)
    gemv, dequantized = spy(T, "gguf_matmul"), spy(T, "gguf_dequantize_triton")
    w = weight("Q4_K", 64, 512)[0].to("cuda")
    for rows in (1, 8, T.CUBLAS_MIN_ROWS):
        x = torch.randn(rows, 512, device="cuda", dtype=torch.bfloat16)
        assert rel_err(G.gguf_linear(x, w).float(), x.float() @ G.dequantize_ref(w).T) < 0.01
    assert gemv == ["gguf_matmul"] * 2 and dequantized == ["gguf_dequantize_triton"]
    # float64 activations: the reference (the kernels take bf16/fp16/fp32)
    assert "bf16/fp16/fp32" in T.gguf_triton_blocker(torch.randn(1, 512, device="cuda", dtype=torch.float64), w)


@cuda
@pytest.mark.parametrize("name", TYPES)
@pytest.mark.parametrize("shape", [(4096, 4096), (22016, 4096), (4096, 11008)])
def test_triton_at_7b_shapes(name, shape):
    """A 7B layer's shapes at decode, batch and prefill rows: the launch heuristic's tilings
    and K splits, against the float32 product of the blocks."""
    n, k = shape
    gen = np.random.default_rng(n + k)
    w = G.GGUFWeight(torch.from_numpy(random_blocks(name, n, k, gen)).cuda(), G.GGUF_TYPES[name], k)
    dense = G.dequantize_ref(w)
    for rows in (1, 3, 40, 512):
        x = torch.randn(rows, k, device="cuda").bfloat16()
        out = G.gguf_linear(x, w)
        assert out.dtype == torch.bfloat16 and rel_err(out.float(), x.float() @ dense.T) < 0.01, rows


@cuda
def test_a_cuda_graph_replays_the_triton_path():
    """The launches depend on the shapes only: captured once, a replay on new inputs equals eager."""
    w = weight("Q6_K", 4096, 4096)[0].to("cuda")
    for rows in (1, 8, T.CUBLAS_MIN_ROWS):
        x = torch.randn(rows, 4096, device="cuda", dtype=torch.bfloat16)
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            G.gguf_linear(x, w)  # compiles the kernels outside the capture
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = G.gguf_linear(x, w)
        x.copy_(torch.randn_like(x))
        graph.replay()
        # split-K sums land in any order: equal up to a bf16 rounding, not bitwise
        torch.testing.assert_close(out, G.gguf_linear(x, w))
