"""The Triton kernels on CPU tensors under TRITON_INTERPRET=1, at small shapes.

Run by test_triton_interpreter.py in a fresh pytest process (Triton picks compiled or
interpreted when triton.language is first imported). fp32 and fp16 only: the
interpreter's tl.dot multiplies bf16 inputs as raw 16-bit integers (triton 3.9.0).
"""

import os

import pytest
import torch

import loopcoder.engine  # noqa: F401  first: kernels/ and engine/ import each other, the engine must lead
from loopcoder.kernels import attention
from loopcoder.kernels.attention import DecodeLaunch, paged_attention, paged_attention_ref, paged_decode_attention_triton
from loopcoder.kernels.loop_attention import loop_attention, loop_decode_attention_triton

from .helpers import REL_ERROR, decode_case, loop_expected, rel_error

pytestmark = pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1", reason="needs TRITON_INTERPRET=1")

CONTEXTS = [1, 4, 5, 23]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("heads", [(2, 2), (10, 2)])
@pytest.mark.parametrize("window", [None, 1, 6])
@pytest.mark.parametrize("splits", [1, 3])
def test_paged_decode(dtype, heads, window, splits):
    case = decode_case(CONTEXTS, *heads, 16, dtype, block_size=4, seed=splits)
    out = torch.full_like(case.q, float("nan"))
    paged_decode_attention_triton(case.q, *case.caches, case.meta.block_tables, case.meta.positions, max(CONTEXTS),
                                  case.scale, window, launch=DecodeLaunch(num_splits=splits, block_n=16), out=out)
    wide = case.upcast()
    assert rel_error(out, paged_attention_ref(wide.q, *wide.caches, case.meta, case.scale, window)) < REL_ERROR[dtype]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("heads", [(2, 2), (10, 2)])
@pytest.mark.parametrize("window", [1, 6])
@pytest.mark.parametrize("splits", [1, 3])
def test_loop_decode(dtype, heads, window, splits):
    case = decode_case(CONTEXTS, *heads, 16, dtype, block_size=4, num_caches=4, seed=splits)
    out = torch.full_like(case.q, float("nan"))
    loop_decode_attention_triton(
        case.q, tuple(case.caches[:2]), tuple(case.caches[2:]), case.meta.block_tables, case.meta.positions,
        max(CONTEXTS), case.scale, window, case.gate_weight, case.gate_bias,
        launch=DecodeLaunch(num_splits=splits, block_n=16), out=out,
    )
    assert rel_error(out, loop_expected(case, window)) < REL_ERROR[dtype]


def test_forced_triton_dispatches(monkeypatch):
    monkeypatch.setenv("LOOPCODER_KERNELS", "triton")
    calls = []
    original = attention.paged_decode_attention_triton
    monkeypatch.setattr(attention, "paged_decode_attention_triton", lambda *a, **k: calls.append(1) or original(*a, **k))
    case = decode_case([3, 20], 4, 2, 16, torch.float32, block_size=4, num_caches=4)
    out = paged_attention(case.q, *case.caches[:2], case.meta, case.scale, 5)
    assert calls == [1]
    assert rel_error(out, paged_attention_ref(case.q, *case.caches[:2], case.meta, case.scale, 5)) < 1e-5
    mixed = loop_attention(case.q, tuple(case.caches[:2]), tuple(case.caches[2:]), case.meta, case.scale, 5,
                           case.gate_weight, case.gate_bias)
    assert rel_error(mixed, loop_expected(case, 5)) < 1e-5


def test_automatic_choice_never_interprets(monkeypatch):
    monkeypatch.delenv("LOOPCODER_KERNELS", raising=False)
    case = decode_case([3, 20], 4, 2, 16, torch.float32, block_size=4)
    monkeypatch.setattr(attention, "paged_decode_attention_triton", lambda *a, **k: pytest.fail("interpreted"))
    paged_attention(case.q, *case.caches, case.meta, case.scale)
