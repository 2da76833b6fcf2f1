"""GGUF blocks as data: the eight types computed as stored (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0,
Q4_K, Q5_K, Q6_K), a weight held in them (`GGUFWeight`), and the torch reference of what
they hold (`dequantize_ref`, `gguf_linear_ref`). The kernels that compute the blocks
(`gguf_linear.py` on the CPU, `gguf_triton.py` on the GPU) share this module.

A weight (N outputs, K inputs) is its rows of blocks as the file lays them out:
`blocks` is (N, K // block_elems * block_bytes) uint8. Row r of the matrix is row r of
`blocks`, so rows can be permuted or cut as a whole (llama's q/k rows, a shard).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class GGUFType:
    name: str
    id: int  # ggml's type id, as the file stores it
    block_elems: int
    block_bytes: int


GGUF_TYPES = {t.name: t for t in (
    GGUFType("Q4_0", 2, 32, 18),
    GGUFType("Q4_1", 3, 32, 20),
    GGUFType("Q5_0", 6, 32, 22),
    GGUFType("Q5_1", 7, 32, 24),
    GGUFType("Q8_0", 8, 32, 34),
    GGUFType("Q4_K", 12, 256, 144),
    GGUFType("Q5_K", 13, 256, 176),
    GGUFType("Q6_K", 14, 256, 210),
)}
_BY_ID = {t.id: t for t in GGUF_TYPES.values()}


@dataclass
class GGUFWeight:
    blocks: torch.Tensor  # (N, row_bytes) uint8, the file's blocks row by row
    type: GGUFType
    in_features: int

    def __post_init__(self) -> None:
        self.blocks = self.blocks.contiguous()  # the kernel walks rows by pointer
        t, k = self.type, self.in_features
        if k <= 0 or k % t.block_elems:
            raise ValueError(f"a {t.name} weight needs its input size to be a multiple of {t.block_elems}, got {k}")
        row_bytes = k // t.block_elems * t.block_bytes
        if self.blocks.dtype != torch.uint8 or self.blocks.dim() != 2 or self.blocks.shape[1] != row_bytes:
            raise ValueError(f"a {t.name} weight of {k} inputs is (N, {row_bytes}) uint8 blocks, "
                             f"got {tuple(self.blocks.shape)} {self.blocks.dtype}")

    @property
    def shape(self) -> tuple[int, int]:
        return self.blocks.shape[0], self.in_features

    def nbytes(self) -> int:
        return self.blocks.numel()

    def to(self, device: torch.device | str) -> "GGUFWeight":
        """The same blocks on `device` (the bytes copied as they are)."""
        return GGUFWeight(self.blocks.to(device), self.type, self.in_features)


def gguf_type(name_or_id: str | int) -> GGUFType | None:
    """The type by ggml name ("Q4_K") or id (12), or None where it is not computed here."""
    return GGUF_TYPES.get(name_or_id) if isinstance(name_or_id, str) else _BY_ID.get(name_or_id)


# -- torch reference ------------------------------------------------------------------


def _half(b: torch.Tensor, at: int) -> torch.Tensor:
    """The float16 at bytes [at, at + 2) of each block, as float32 (..., 1)."""
    return b[..., at:at + 2].contiguous().view(torch.float16).float()


def _nibbles(qs: torch.Tensor) -> torch.Tensor:
    """16 bytes -> 32 codes: low nibbles first, then the high ones."""
    return torch.cat([qs & 0xF, qs >> 4], dim=-1)


def _bits(b: torch.Tensor, at: int) -> torch.Tensor:
    """The 32 bits of the uint32 at bytes [at, at + 4), bit i at position i, as 0 or 16."""
    h = b[..., at:at + 4].to(torch.int64)
    word = h[..., 0] | h[..., 1] << 8 | h[..., 2] << 16 | h[..., 3] << 24
    shifts = torch.arange(32, device=b.device)
    return ((word[..., None] >> shifts) & 1).to(torch.uint8) << 4


def _k4_scales(b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Q4_K / Q5_K: the eight 6-bit scales and mins packed in bytes 4..15 of a super-block."""
    q = b[..., 4:16].to(torch.int32)
    scale = torch.cat([q[..., 0:4] & 63, (q[..., 8:12] & 0xF) | ((q[..., 0:4] >> 6) << 4)], dim=-1)
    low = torch.cat([q[..., 4:8] & 63, (q[..., 8:12] >> 4) | ((q[..., 4:8] >> 6) << 4)], dim=-1)
    return scale.float(), low.float()


def _k4_codes(qs: torch.Tensor) -> torch.Tensor:
    """128 bytes -> 256 codes: per 64, the 32 low nibbles then the 32 high ones."""
    q = qs.reshape(*qs.shape[:-1], 4, 1, 32)
    return torch.cat([q & 0xF, q >> 4], dim=-2).reshape(*qs.shape[:-1], 8, 32)


def _dequantize_blocks(b: torch.Tensor, t: GGUFType) -> torch.Tensor:
    """(..., block_bytes) uint8 -> (..., block_elems) float32."""
    if t.name in ("Q4_0", "Q4_1"):
        d, at = _half(b, 0), 2 if t.name == "Q4_0" else 4
        codes = _nibbles(b[..., at:at + 16]).float()
        return d * (codes - 8) if t.name == "Q4_0" else d * codes + _half(b, 2)
    if t.name in ("Q5_0", "Q5_1"):
        d, at = _half(b, 0), 2 if t.name == "Q5_0" else 4
        codes = (_nibbles(b[..., at + 4:at + 20]) | _bits(b, at)).float()
        return d * (codes - 16) if t.name == "Q5_0" else d * codes + _half(b, 2)
    if t.name == "Q8_0":
        return _half(b, 0) * b[..., 2:34].contiguous().view(torch.int8).float()
    if t.name in ("Q4_K", "Q5_K"):
        scale, low = _k4_scales(b)  # (..., 8)
        codes = _k4_codes(b[..., 16:144] if t.name == "Q4_K" else b[..., 48:176])  # (..., 8, 32)
        if t.name == "Q5_K":
            high = b[..., 16:48][..., None, :] >> torch.arange(8, device=b.device, dtype=torch.uint8)[:, None]
            codes = codes | (high & 1) << 4
        w = (_half(b, 0) * scale)[..., None] * codes.float() - (_half(b, 2) * low)[..., None]
        return w.reshape(*b.shape[:-1], 256)
    # Q6_K: per half of 128, four sub-blocks of 32: (low | high nibble) x (first | second 32 bytes).
    ql = b[..., 0:128].reshape(*b.shape[:-1], 2, 1, 2, 32)
    low = torch.cat([ql & 0xF, ql >> 4], dim=-3).reshape(*b.shape[:-1], 2, 4, 32)
    qh = b[..., 128:192].reshape(*b.shape[:-1], 2, 1, 32)
    high = (qh >> torch.arange(0, 8, 2, device=b.device, dtype=torch.uint8)[:, None]) & 3
    codes = (low | high << 4).reshape(*b.shape[:-1], 16, 16).float() - 32
    scales = b[..., 192:208].contiguous().view(torch.int8).float()  # one per 16 weights, in order
    return (_half(b, 208) * scales)[..., None] * codes.reshape(*b.shape[:-1], 16, 16)


def dequantize_ref(weight: GGUFWeight) -> torch.Tensor:
    """The (N, K) float32 values the blocks hold, with torch ops on the blocks' device."""
    t = weight.type
    n, k = weight.shape
    blocks = weight.blocks.reshape(n, k // t.block_elems, t.block_bytes)
    return _dequantize_blocks(blocks, t).reshape(n, k)


def gguf_linear_ref(x: torch.Tensor, weight: GGUFWeight, bias: torch.Tensor | None = None) -> torch.Tensor:
    return F.linear(x, dequantize_ref(weight).to(x.dtype), bias)
