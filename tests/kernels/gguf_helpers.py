"""GGUF blocks for tests: random blocks of every type the kernel computes, and simple
quantizers for the K-quants, which the gguf package only dequantizes.

The quantizers are round-to-nearest with scales from each sub-block's range: not
llama.cpp's search for the best scales, but blocks in the exact layout, which is what the
tests need (the gguf package's dequantizer checks the layout against the float weights).
"""

from __future__ import annotations

import gguf
import numpy as np

# Byte offsets of each type's float16 fields within a block.
HALF_FIELDS = {"Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0], "Q4_K": [0, 2], "Q5_K": [0, 2],
               "Q6_K": [208]}
BLOCK = {"Q4_0": (32, 18), "Q4_1": (32, 20), "Q5_0": (32, 22), "Q5_1": (32, 24), "Q8_0": (32, 34), "Q4_K": (256, 144),
         "Q5_K": (256, 176), "Q6_K": (256, 210)}


def random_blocks(name: str, n: int, k: int, rng: np.random.Generator, scale: float = 0.01) -> np.ndarray:
    """(n, row_bytes) uint8: random codes and bits, float16 fields small and finite."""
    elems, nbytes = BLOCK[name]
    b = rng.integers(0, 256, size=(n, k // elems, nbytes), dtype=np.uint8)
    for at in HALF_FIELDS[name]:
        b[..., at:at + 2] = (rng.standard_normal((n, k // elems, 1)) * scale).astype(np.float16).view(np.uint8)
    return b.reshape(n, -1)


def _f16(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float16)[..., None].view(np.uint8)


def _k4_pack_scales(sc: np.ndarray, mn: np.ndarray) -> np.ndarray:
    """(..., 8) 6-bit scales and mins -> (..., 12) bytes, as get_scale_min_k4 reads them."""
    out = np.zeros((*sc.shape[:-1], 12), dtype=np.uint8)
    out[..., 0:4] = sc[..., 0:4] | ((sc[..., 4:8] >> 4) << 6)
    out[..., 4:8] = mn[..., 0:4] | ((mn[..., 4:8] >> 4) << 6)
    out[..., 8:12] = (sc[..., 4:8] & 0xF) | ((mn[..., 4:8] & 0xF) << 4)
    return out


def _quantize_k(w: np.ndarray, bits: int) -> np.ndarray:
    """Q4_K (bits 4) or Q5_K (bits 5) blocks of w (n, k)."""
    n, k = w.shape
    top = (1 << bits) - 1
    x = w.reshape(n, k // 256, 8, 32).astype(np.float32)
    low = np.minimum(x.min(axis=-1), 0.0)  # (n, sb, 8)
    scale = (x.max(axis=-1) - low) / top
    d = np.maximum(scale.max(axis=-1), 1e-8) / 63  # (n, sb)
    dmin = np.maximum((-low).max(axis=-1), 1e-8) / 63
    d, dmin = d.astype(np.float16).astype(np.float32), dmin.astype(np.float16).astype(np.float32)
    sc = np.clip(np.rint(scale / d[..., None]), 1, 63).astype(np.uint8)
    mn = np.clip(np.rint(-low / dmin[..., None]), 0, 63).astype(np.uint8)
    step = (d[..., None] * sc)[..., None]
    codes = np.clip(np.rint((x + (dmin[..., None] * mn)[..., None]) / step), 0, top).astype(np.uint8)  # (n, sb, 8, 32)
    pairs = codes.reshape(n, k // 256, 4, 2, 32)
    qs = ((pairs[:, :, :, 0] & 0xF) | ((pairs[:, :, :, 1] & 0xF) << 4)).reshape(n, k // 256, 128)
    parts = [_f16(d), _f16(dmin), _k4_pack_scales(sc, mn)]
    if bits == 5:
        high = (codes >> 4) & 1  # (n, sb, 8, 32): bit j of qh[l] is sub-block j's element l
        qh = np.zeros((n, k // 256, 32), dtype=np.uint8)
        for j in range(8):
            qh |= (high[:, :, j] << j).astype(np.uint8)
        parts.append(qh)
    parts.append(qs)
    return np.concatenate(parts, axis=-1).reshape(n, -1)


def _quantize_q6_k(w: np.ndarray) -> np.ndarray:
    n, k = w.shape
    x = w.reshape(n, k // 256, 16, 16).astype(np.float32)
    scale = np.abs(x).max(axis=-1) / 31  # (n, sb, 16)
    d = np.maximum(scale.max(axis=-1), 1e-8) / 127
    d = d.astype(np.float16).astype(np.float32)
    sc = np.clip(np.rint(scale / d[..., None]), 1, 127).astype(np.int8)
    codes = np.clip(np.rint(x / (d[..., None] * sc)[..., None]) + 32, 0, 63).astype(np.uint8)
    c = codes.reshape(n, k // 256, 2, 4, 32)  # (half, sub-block within the half, 32)
    ql = np.concatenate([(c[..., 0, :] & 0xF) | ((c[..., 2, :] & 0xF) << 4),
                         (c[..., 1, :] & 0xF) | ((c[..., 3, :] & 0xF) << 4)], axis=-1)  # (n, sb, 2, 64)
    qh = sum(((c[..., i, :] >> 4) & 3) << (2 * i) for i in range(4)).astype(np.uint8)  # (n, sb, 2, 32)
    return np.concatenate([ql.reshape(n, k // 256, 128), qh.reshape(n, k // 256, 64), sc.view(np.uint8),
                           _f16(d)], axis=-1).reshape(n, -1)


def quantize(w: np.ndarray, name: str) -> np.ndarray:
    """(n, k) float32 -> (n, row_bytes) uint8 blocks of type `name`."""
    if name == "Q4_K":
        return _quantize_k(w, 4)
    if name == "Q5_K":
        return _quantize_k(w, 5)
    if name == "Q6_K":
        return _quantize_q6_k(w)
    return gguf.quants.quantize(w.astype(np.float32), gguf.GGMLQuantizationType[name])
