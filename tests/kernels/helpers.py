"""Random paged decode and prefill/extend cases for the attention kernels, and the error measure they are judged by."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from loopcoder.kernels.attention import AttentionMetadata, loop_gate, paged_attention_ref

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

# ‖out − ref‖ / ‖ref‖ against a float64 reference: float32 (exact float32 products) lands
# far under 1e-5; bf16 and fp16 inputs round the probabilities before P·V.
REL_ERROR = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1e-2}


@dataclass
class DecodeCase:
    q: torch.Tensor  # (T, Hq, D): one row per sequence for decode
    caches: list[torch.Tensor]  # each (num_blocks, block_size, Hkv, D); all share the block tables
    meta: AttentionMetadata
    gate_weight: torch.Tensor  # (Hq, D)
    gate_bias: torch.Tensor  # (Hq,)

    @property
    def scale(self) -> float:
        return self.q.shape[-1] ** -0.5

    def upcast(self, dtype: torch.dtype = torch.float64) -> "DecodeCase":
        return DecodeCase(self.q.to(dtype), [c.to(dtype) for c in self.caches], self.meta,
                          self.gate_weight.to(dtype), self.gate_bias.to(dtype))


def decode_case(context_lens: list[int], num_heads: int, num_kv_heads: int, head_dim: int, dtype: torch.dtype,
                block_size: int = 16, num_caches: int = 2, device: str = "cpu", seed: int = 0) -> DecodeCase:
    """One decode query per sequence over random caches, each sequence's pages scattered at random.

    A few spare blocks stay unused, so a kernel reading past a block table reads junk.
    """
    return extend_case(context_lens, [1] * len(context_lens), num_heads, num_kv_heads, head_dim, dtype,
                       block_size, num_caches, device, seed)


def extend_case(context_lens: list[int], query_lens: list[int], num_heads: int, num_kv_heads: int, head_dim: int,
                dtype: torch.dtype, block_size: int = 16, num_caches: int = 2, device: str = "cpu",
                seed: int = 0) -> DecodeCase:
    """Sequence b's last query_lens[b] tokens as query rows (a prefill when it is all of
    context_lens[b], a chunk on a cached prefix when fewer, a decode when 1), as in decode_case."""
    gen = torch.Generator().manual_seed(seed)
    pages = [(n + block_size - 1) // block_size for n in context_lens]
    num_blocks = sum(pages) + 3
    order = torch.randperm(num_blocks, generator=gen).tolist()
    tables = []
    for n in pages:
        tables.append(order[:n])
        order = order[n:]
    starts = [n - q for n, q in zip(context_lens, query_lens)]
    meta = AttentionMetadata.build(tables, starts, query_lens, block_size, device)

    def randn(*shape):
        return torch.randn(*shape, generator=gen).to(dtype=dtype, device=device)

    caches = [randn(num_blocks, block_size, num_kv_heads, head_dim) for _ in range(num_caches)]
    q = randn(sum(query_lens), num_heads, head_dim)
    # Gates spread around 0.5 so that both branches count.
    return DecodeCase(q, caches, meta, randn(num_heads, head_dim) * 0.2, randn(num_heads))


def rel_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    """‖out − ref‖ / ‖ref‖ in float64; NaN anywhere fails."""
    assert not out.isnan().any(), "NaN in the output (an element left unwritten?)"
    out, ref = out.double(), ref.double()
    return ((out - ref).norm() / ref.norm()).item()


def loop_expected(case: DecodeCase, window: int) -> torch.Tensor:
    """float64 truth of the loop layer's g·A + (1−g)·B; caches[:2] are loop 1's, caches[2:] the loop's own."""
    wide = case.upcast()
    a = paged_attention_ref(wide.q, *wide.caches[:2], case.meta, case.scale)
    b = paged_attention_ref(wide.q, *wide.caches[2:], case.meta, case.scale, window)
    g = loop_gate(wide.q, wide.gate_weight, wide.gate_bias)
    return g * a + (1 - g) * b
