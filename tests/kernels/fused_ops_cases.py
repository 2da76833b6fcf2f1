"""Cases shared by the fused elementwise kernels' tests: RMSNorm and LayerNorm (+ residual), SwiGLU's
silu * up, and RoPE with the K/V store. Each compares the dispatcher's Triton path with the
torch reference on the same inputs; `device` is "cuda" on a GPU, "cpu" under
TRITON_INTERPRET=1 (test_triton_interpreter.py)."""

import torch

from loopcoder.engine.models.layers import RotaryEmbedding
from loopcoder.kernels import layernorm, rmsnorm, rope, swiglu

TOL = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}


def rms_norm_case(rows, hidden, dtype, device, residual):
    gen = torch.Generator().manual_seed(rows * 31 + hidden)
    x = torch.randn(rows, hidden, generator=gen).to(dtype).to(device)
    w = (1 + 0.1 * torch.randn(hidden, generator=gen)).to(dtype).to(device)
    r = torch.randn(rows, hidden, generator=gen).to(dtype).to(device) if residual else None
    got = rmsnorm.rms_norm_triton(x, w, 1e-5, r)
    want = rmsnorm.rms_norm_ref(x, w, 1e-5, r)
    if residual:
        torch.testing.assert_close(got[1], want[1], atol=0, rtol=0)  # the sum rounds the same way
        got, want = got[0], want[0]
    torch.testing.assert_close(got, want, atol=TOL[dtype], rtol=TOL[dtype])


def layer_norm_case(rows, hidden, dtype, device, residual):
    gen = torch.Generator().manual_seed(rows * 37 + hidden)
    x = (3 + torch.randn(rows, hidden, generator=gen)).to(dtype).to(device)  # a mean to subtract
    w = (1 + 0.1 * torch.randn(hidden, generator=gen)).to(dtype).to(device)
    b = (0.1 * torch.randn(hidden, generator=gen)).to(dtype).to(device)
    r = torch.randn(rows, hidden, generator=gen).to(dtype).to(device) if residual else None
    got = layernorm.layer_norm_triton(x, w, b, 1e-5, r)
    want = layernorm.layer_norm_ref(x, w, b, 1e-5, r)
    if residual:
        torch.testing.assert_close(got[1], want[1], atol=0, rtol=0)  # the sum rounds the same way
        got, want = got[0], want[0]
    torch.testing.assert_close(got, want, atol=TOL[dtype], rtol=TOL[dtype])


def silu_mul_case(rows, width, dtype, device, fused_projection):
    gen = torch.Generator().manual_seed(rows + width)
    if fused_projection:  # gate and up as column views of one (T, 2I) output
        both = torch.randn(rows, 2 * width, generator=gen).to(dtype).to(device)
        gate, up = both[:, :width], both[:, width:]
    else:
        gate = torch.randn(rows, width, generator=gen).to(dtype).to(device)
        up = torch.randn(rows, width, generator=gen).to(dtype).to(device)
    got = swiglu.silu_mul(gate, up)
    torch.testing.assert_close(got, swiglu.silu_mul_ref(gate, up), atol=TOL[dtype], rtol=TOL[dtype])


def rope_store_case(positions, num_heads, num_kv_heads, head_dim, dtype, device, block_size=4):
    gen = torch.Generator().manual_seed(len(positions) * 7 + num_heads)
    T = len(positions)
    q = torch.randn(T, num_heads, head_dim, generator=gen).to(dtype).to(device)
    k = torch.randn(T, num_kv_heads, head_dim, generator=gen).to(dtype).to(device)
    v = torch.randn(T, num_kv_heads, head_dim, generator=gen).to(dtype).to(device)
    num_blocks = T // block_size + 3
    slots = torch.randperm(num_blocks * block_size, generator=gen)[:T].to(device)
    pos = torch.tensor(positions, dtype=torch.int64, device=device)
    cos, sin = RotaryEmbedding(head_dim, 10000.0, None).tables(max(positions) + 1, torch.device(device))
    shape = (num_blocks, block_size, num_kv_heads, head_dim)
    caches = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(4)]
    want_q, want_k = rope.rope_ref(q, k, pos, cos, sin)
    rope.store_kv_ref(want_k, v, caches[0], caches[1], slots)
    got_q = rope.rope_store(q.clone(), k, v, pos, cos, sin, caches[2], caches[3], slots)
    # It rounds where the reference rounds, but a compiler may fold a rounding away: one unit
    # in the last place, at most (bit-equal under the interpreter).
    tol = 1e-6 if dtype == torch.float32 else TOL[dtype]
    torch.testing.assert_close(got_q, want_q, atol=tol, rtol=tol)
    torch.testing.assert_close(caches[2], caches[0], atol=tol, rtol=tol)
    torch.testing.assert_close(caches[3], caches[1], atol=0, rtol=0)
