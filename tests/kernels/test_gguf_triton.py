"""kernels/gguf_triton.py: GGUF blocks dequantized inside a Triton matmul, for every type,
equal to the float32 reference of the same blocks (`gguf_linear_ref`).

Runs compiled on a CUDA device, or on CPU tensors under TRITON_INTERPRET=1
(test_triton_interpreter.py runs this file so, in a fresh pytest process); skipped
otherwise. Under the interpreter the tl.dot launches take fp16 only: its tl.dot multiplies
bf16 inputs as raw 16-bit integers (triton 3.9.0). The one-row GEMV and the dequantizer
take bf16 there too.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from loopcoder.kernels import gguf_linear as G
from loopcoder.kernels import gguf_triton as T

from .gguf_helpers import random_blocks

INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
pytestmark = [
    pytest.mark.skipif(not (torch.cuda.is_available() or INTERPRETED), reason="needs CUDA or TRITON_INTERPRET=1"),
    pytest.mark.skipif(T.triton is None, reason="needs triton"),
]
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
TYPES = list(G.GGUF_TYPES)
DTYPES = [torch.float16, torch.float32] if INTERPRETED else [torch.bfloat16, torch.float16, torch.float32]
# max |out - ref| / max |ref|: the output rounded to the dtype, and for tl.dot the weights too.
TOLERANCE = {torch.float16: 2e-3, torch.bfloat16: 1.6e-2, torch.float32: 1e-5}


@pytest.fixture(autouse=True)
def forced(monkeypatch):
    monkeypatch.setenv("LOOPCODER_KERNELS", "triton")


def weight(name: str, n: int, k: int, seed: int = 0) -> G.GGUFWeight:
    blocks = random_blocks(name, n, k, np.random.default_rng(seed))
    return G.GGUFWeight(torch.from_numpy(blocks).to(DEVICE), G.GGUF_TYPES[name], k)


def inputs(m: int, k: int, n: int, dtype: torch.dtype, with_bias: bool, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(m, k, generator=gen).to(device=DEVICE, dtype=dtype)
    bias = (torch.randn(n, generator=gen) * 0.1).to(device=DEVICE, dtype=dtype) if with_bias else None
    return x, bias


def scaled_error(out: torch.Tensor, x: torch.Tensor, w: G.GGUFWeight, bias: torch.Tensor | None) -> float:
    """max |out - ref| / max |ref| against the reference in float32."""
    ref = G.gguf_linear_ref(x.float(), w, None if bias is None else bias.float())
    assert out.shape == ref.shape and out.dtype == x.dtype and not out.isnan().any()
    return float((out.float() - ref).abs().max() / ref.abs().max())


# M in {1, 3, 40}, K in {256, 512}, N in {32, 48}, with and without a bias: each value in a few.
CASES = [(1, 256, 32, False), (1, 512, 48, True), (3, 256, 48, True), (3, 512, 32, False), (40, 256, 32, True),
         (40, 512, 48, False)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES, ids=lambda c: "m{}-k{}-n{}{}".format(*c[:3], "-bias" if c[3] else ""))
@pytest.mark.parametrize("name", TYPES)
def test_the_dispatcher_equals_the_reference(name, case, dtype):
    m, k, n, with_bias = case
    w = weight(name, n, k, seed=m)
    x, bias = inputs(m, k, n, dtype, with_bias, seed=k)
    assert scaled_error(G.gguf_linear(x, w, bias), x, w, bias) < TOLERANCE[dtype]


LAUNCHES = {
    "gemv-split": T.GGUFLaunch(block_m=1, block_n=16, sub_blocks=3, split_k=3),  # sub-blocks past a split's end
    "gemv": T.GGUFLaunch(block_m=1, block_n=64, sub_blocks=1),
    "dot-16": T.GGUFLaunch(block_m=16, block_n=32, sub_blocks=2, use_dot=True),
    "dot-split": T.GGUFLaunch(block_m=16, block_n=16, sub_blocks=3, split_k=4, use_dot=True),
}


@pytest.mark.parametrize("launch", LAUNCHES, ids=str)
@pytest.mark.parametrize("name", TYPES)
def test_every_tiling_equals_the_reference(name, launch):
    """Rows, outputs and K ranges that the tiles do not divide: the masks hold."""
    w = weight(name, 48, 512, seed=3)
    x, bias = inputs(3, 512, 48, torch.float16, True, seed=4)
    assert scaled_error(T.gguf_matmul(x, w, bias, LAUNCHES[launch]), x, w, bias) < TOLERANCE[torch.float16]


@pytest.mark.parametrize("rows", [1, 3])
@pytest.mark.parametrize("name", TYPES)
def test_bfloat16_rows_on_the_gemv(name, rows):
    """The GEMV, one program row per activation row (grid over M), in bf16."""
    w = weight(name, 32, 256, seed=5)
    x, bias = inputs(rows, 256, 32, torch.bfloat16, True, seed=6)
    launch = T.GGUFLaunch(block_m=1, block_n=32, split_k=2)
    assert scaled_error(T.gguf_matmul(x, w, bias, launch), x, w, bias) < TOLERANCE[torch.bfloat16]


def test_the_gemv_takes_one_row_per_program():
    w = weight("Q8_0", 32, 256)
    x, _ = inputs(3, 256, 32, torch.float16, False)
    with pytest.raises(ValueError, match="block_m 1"):
        T.gguf_matmul(x, w, launch=T.GGUFLaunch(block_m=4))


@pytest.mark.parametrize("name", TYPES)
def test_the_dequantizer_writes_what_the_blocks_hold(name):
    w = weight(name, 40, 512, seed=7)
    ref = G.dequantize_ref(w)
    # float32: the reference's products, up to a fused multiply-add.
    atol = 1e-6 * float(ref.abs().max())
    torch.testing.assert_close(T.gguf_dequantize_triton(w, torch.float32), ref, rtol=1e-6, atol=atol)
    torch.testing.assert_close(G.dequantize(w), ref, rtol=1e-6, atol=atol)
    # bf16: rounded once (the interpreter truncates, so within a bf16 step, not equal).
    bf16 = T.gguf_dequantize_triton(w, torch.bfloat16, block_n=16, sub_blocks=3)
    torch.testing.assert_close(bf16, ref.to(torch.bfloat16))


@pytest.mark.parametrize("name", ["Q4_1", "Q6_K"])
def test_many_rows_take_the_dequantized_weight(name, spy):
    """From CUBLAS_MIN_ROWS rows: the weight dequantized once, then F.linear."""
    calls = spy(T, "gguf_dequantize_triton")
    w = weight(name, 32, 256, seed=8)
    x, bias = inputs(T.CUBLAS_MIN_ROWS, 256, 32, torch.float16, True, seed=9)
    out = G.gguf_linear(x.reshape(4, -1, 256), w, bias)  # (4, M / 4, N): leading dimensions kept
    assert scaled_error(out.reshape(-1, 32), x, w, bias) < TOLERANCE[torch.float16]
    assert calls == ["gguf_dequantize_triton"]
