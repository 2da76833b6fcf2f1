"""The fused elementwise kernels under TRITON_INTERPRET=1 on CPU tensors (see
test_triton_interpreter.py), small shapes, fp32 and fp16."""

import os

import pytest
import torch

import loopcoder.engine  # noqa: F401  the engine first: kernels/ and engine/ import each other

from .fused_ops_cases import rms_norm_case, rope_store_case, silu_mul_case

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
@pytest.mark.parametrize("fused_projection", [False, True])
def test_silu_mul(fused_projection, dtype):
    silu_mul_case(3, 1500, dtype, "cpu", fused_projection)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("heads", [(2, 2), (10, 2), (5, 1)])
def test_rope_store(heads, dtype):
    rope_store_case([0, 5, 6, 7, 30, 2], *heads, 16, dtype, "cpu")
