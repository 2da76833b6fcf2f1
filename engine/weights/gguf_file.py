"""GGUF files: open, read metadata, build a `ModelConfig`, yield HF-named float32 tensors.

Only the `llama` and `qwen2` GGUF architectures are read (SmolLM2, Llama, IQuestCoder and
Qwen2.5-Coder as llama.cpp converts them). Tensors are dequantized with `gguf.quants`
one at a time, so at most one float32 copy of a weight is alive per step of the iterator.

Two layout facts of llama.cpp's converter are undone here:

- GGUF stores dimensions innermost first (`ne = [in, out]`); HF shapes are `[out, in]`.
- For architecture `llama` the converter permutes the rows of q/k (weights and biases) so
  that llama.cpp can apply RoPE to adjacent pairs; HF rotates halves. `qwen2` files are
  written unpermuted (llama.cpp uses NeoX-style RoPE for qwen2).

Llama 3.x frequency scaling is not stored as metadata but as a `rope_freqs.weight`
tensor of per-frequency divisors; `config_from_gguf` turns it back into a `RopeScaling`
and `iter_gguf_tensors` skips it.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import torch
from gguf import GGUFReader, GGUFValueType, ReaderField, ReaderTensor

from ..config import ModelConfig
from ..errors import ModelLoadError, UnsupportedModelError

# GGUF architecture -> HF `architectures` entry. The key doubles as our model_type.
_ARCHITECTURES = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM"}
# Architectures whose q/k rows llama.cpp's converter permuted for interleaved RoPE.
_PERMUTED_QK_ARCHS = frozenset({"llama"})

_GLOBAL_TENSORS = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
# Per-block GGUF suffix -> HF suffix under model.layers.N.
_BLOCK_TENSORS = {
    "attn_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_output.weight": "self_attn.o_proj.weight",
    "attn_q.bias": "self_attn.q_proj.bias",
    "attn_k.bias": "self_attn.k_proj.bias",
    "attn_v.bias": "self_attn.v_proj.bias",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}
_QKV_BIASES = ("attn_q.bias", "attn_k.bias", "attn_v.bias")
# Tensors that carry nothing the model needs as a weight:
# - rope_freqs.weight: Llama 3 RoPE scaling, read by config_from_gguf instead.
# - blk.N.attn_rot_embd.weight: a precomputed inv_freq table (old conversions); it follows
#   from rope_theta and head_dim.
_SKIPPED_GLOBAL = frozenset({"rope_freqs.weight"})
_SKIPPED_BLOCK = frozenset({"attn_rot_embd.weight"})

_BLOCK_NAME = re.compile(r"blk\.(\d+)\.(.+)")


# -- opening ----------------------------------------------------------------------


def open_gguf(path: str | os.PathLike[str]) -> GGUFReader:
    """Open a GGUF file (memory-mapped) and check that every tensor lies inside it."""
    path = Path(path)
    if not path.is_file():
        what = "is not a file" if path.exists() else "not found"
        raise ModelLoadError(f"GGUF file {path} {what}")
    try:
        reader = GGUFReader(path)
    except OSError as e:
        raise ModelLoadError(f"cannot read GGUF file {path}: {e}") from None
    except Exception as e:  # noqa: BLE001 - the reader fails in many ways on bad bytes
        raise ModelLoadError(f"GGUF file {path} is truncated or corrupt: {type(e).__name__}: {e}") from None
    _check_tensor_extents(reader, path)
    return reader


def _check_tensor_extents(reader: GGUFReader, path: Path) -> None:
    size = path.stat().st_size
    for t in reader.tensors:
        end = t.data_offset + t.n_bytes
        if end > size:
            raise ModelLoadError(
                f"GGUF file {path} is truncated or corrupt: tensor {t.name!r} ends at byte {end}, "
                f"past the end of the file ({size} bytes)"
            )


# -- metadata ---------------------------------------------------------------------


def read_gguf_metadata(reader: GGUFReader) -> dict[str, Any]:
    """Every key/value field as plain Python values (str, int, float, bool, or lists of them).

    The reader's own header entries (`GGUF.version`, `GGUF.tensor_count`,
    `GGUF.kv_count`) are not key/value fields and are left out. float32 values come back as
    the shortest decimal that rounds to them (1e-05, not 9.99999974738e-06), which is what
    config.json holds. The reader flattens nested arrays; so does this.
    """
    meta: dict[str, Any] = {}
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        try:
            meta[key] = _decode_field(field)
        except UnicodeDecodeError as e:
            raise ModelLoadError(f"GGUF metadata {key!r} holds a string that is not UTF-8: {e}") from None
    return meta


def _decode_field(field: ReaderField) -> Any:
    kind = field.types[0]
    if kind != GGUFValueType.ARRAY:
        return _decode_values(field, kind)[0]
    if len(field.types) == 1:  # an empty array: the reader records no element type
        return []
    return _decode_values(field, field.types[-1])


def _decode_values(field: ReaderField, leaf: GGUFValueType) -> list[Any]:
    """The values at `field.data`: each index names one part (an ndarray view of the file)."""
    parts = [field.parts[i] for i in field.data]
    if leaf == GGUFValueType.STRING:
        # A string part is the uint8 bytes after its u64 length.
        return [p.tobytes().decode("utf-8") for p in parts]
    if not parts:
        return []
    values = np.concatenate(parts)
    if leaf == GGUFValueType.FLOAT32:
        return [float(str(v)) for v in values]  # numpy prints the shortest round-trip form
    return values.tolist()


# -- config -----------------------------------------------------------------------


def config_from_gguf(meta: Mapping[str, Any], tensors: Iterable[ReaderTensor]) -> ModelConfig:
    """Build a ModelConfig from GGUF metadata and the file's tensor list (`reader.tensors`).

    The tensors are needed for what metadata does not say: tied embeddings (no
    `output.weight`), q/k/v bias on llama files, and Llama 3 RoPE scaling (`rope_freqs`).
    """
    arch = meta.get("general.architecture")
    if arch not in _ARCHITECTURES:
        raise UnsupportedModelError(
            f"GGUF architecture {arch!r} is not supported; loopcoder reads {sorted(_ARCHITECTURES)}"
        )
    by_name = {t.name: t for t in tensors}
    _reject_unsupported_features(meta, arch, by_name)
    raw = _hf_config_dict(meta, arch, by_name)
    return ModelConfig.from_dict(raw)


def _reject_unsupported_features(meta: Mapping[str, Any], arch: str, by_name: Mapping[str, ReaderTensor]) -> None:
    if int(meta.get("split.count", 1)) > 1:
        raise UnsupportedModelError(
            f"split GGUF files (split.count={meta['split.count']}) are not supported; "
            "merge them first with `llama-gguf-split --merge`"
        )
    if int(meta.get(f"{arch}.expert_count", 0) or 0) > 0:
        raise UnsupportedModelError(f"mixture-of-experts GGUF ({arch}.expert_count={meta[f'{arch}.expert_count']})"
                                    " is not supported")
    if "blk.0.attn_output.bias" in by_name:
        raise UnsupportedModelError("GGUF tensor 'blk.0.attn_output.bias' (o_proj bias) is not supported")


def _hf_config_dict(meta: Mapping[str, Any], arch: str, by_name: Mapping[str, ReaderTensor]) -> dict[str, Any]:
    """Translate `{arch}.*` and `tokenizer.ggml.*` keys to config.json keys."""

    def get(key: str, default: Any = None) -> Any:
        value = meta.get(f"{arch}.{key}", default)
        if isinstance(value, list):  # some architectures store per-layer head counts
            raise UnsupportedModelError(f"GGUF metadata {arch}.{key} is per-layer ({value[:4]}...); not supported")
        return value

    def need(key: str) -> Any:
        if f"{arch}.{key}" not in meta:
            raise ModelLoadError(f"GGUF metadata lacks required key {arch}.{key}")
        return get(key)

    n_heads = int(need("attention.head_count"))
    hidden = int(need("embedding_length"))
    head_dim = int(get("attention.key_length") or hidden // n_heads)
    _check_head_dims(meta, arch, head_dim)
    theta = float(get("rope.freq_base", 10000.0))
    raw: dict[str, Any] = {
        "model_type": arch,
        "architectures": [_ARCHITECTURES[arch]],
        "vocab_size": _vocab_size(meta, arch),
        "hidden_size": hidden,
        "intermediate_size": need("feed_forward_length"),
        "num_hidden_layers": need("block_count"),
        "num_attention_heads": n_heads,
        "num_key_value_heads": get("attention.head_count_kv") or n_heads,
        "head_dim": head_dim,
        "rope_theta": theta,
        "rms_norm_eps": get("attention.layer_norm_rms_epsilon", 1e-6),
        "max_position_embeddings": get("context_length", 4096),
        "tie_word_embeddings": "output.weight" not in by_name,
        "rope_scaling": _rope_scaling(meta, arch, by_name.get("rope_freqs.weight"), head_dim, theta),
        "bos_token_id": meta.get("tokenizer.ggml.bos_token_id"),
        "eos_token_id": _eos_token_ids(meta),
        "torch_dtype": "float32",
    }
    if arch == "llama":
        raw["attention_bias"] = "blk.0.attn_q.bias" in by_name
    return raw


def _vocab_size(meta: Mapping[str, Any], arch: str) -> int:
    if f"{arch}.vocab_size" in meta:
        return int(meta[f"{arch}.vocab_size"])
    tokens = meta.get("tokenizer.ggml.tokens")
    if not tokens:
        raise ModelLoadError(f"GGUF metadata has neither {arch}.vocab_size nor tokenizer.ggml.tokens")
    return len(tokens)


def _check_head_dims(meta: Mapping[str, Any], arch: str, head_dim: int) -> None:
    value_dim = meta.get(f"{arch}.attention.value_length", head_dim)
    if value_dim != head_dim:
        raise UnsupportedModelError(f"GGUF key_length={head_dim} != value_length={value_dim} is not supported")
    rope_dim = meta.get(f"{arch}.rope.dimension_count", head_dim)
    if rope_dim != head_dim:
        raise UnsupportedModelError(f"partial RoPE ({arch}.rope.dimension_count={rope_dim}, head_dim={head_dim})"
                                    " is not supported")


def _eos_token_ids(meta: Mapping[str, Any]) -> list[int]:
    """eos first, then end-of-turn / end-of-message ids: llama.cpp stops on all of them."""
    keys = ("tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id")
    ids = [int(meta[k]) for k in keys if meta.get(k) is not None]
    return list(dict.fromkeys(ids))


def _rope_scaling(
    meta: Mapping[str, Any], arch: str, rope_freqs: ReaderTensor | None, head_dim: int, theta: float
) -> dict[str, Any] | None:
    if rope_freqs is not None:
        return _llama3_scaling_from_freqs(rope_freqs, head_dim, theta)
    kind = meta.get(f"{arch}.rope.scaling.type")
    factor = meta.get(f"{arch}.rope.scaling.factor")
    if kind is None and meta.get(f"{arch}.rope.scale_linear") is not None:  # pre-2024 key
        kind, factor = "linear", meta[f"{arch}.rope.scale_linear"]
    if kind in (None, "none") or (kind == "linear" and float(factor or 1.0) == 1.0):
        return None
    # from_dict rejects anything but linear/llama3 (yarn, longrope) with UnsupportedModelError.
    return {"rope_type": kind, "factor": float(factor or 1.0)}


# Llama 3.1 / 3.2 / 3.3 ship these; the factor differs (8 or 32) and is read off the tensor.
_LLAMA3_LOW_FREQ_FACTOR = 1.0
_LLAMA3_HIGH_FREQ_FACTOR = 4.0
_LLAMA3_ORIGINAL_CONTEXT = 8192


def _llama3_scaling_from_freqs(rope_freqs: ReaderTensor, head_dim: int, theta: float) -> dict[str, Any]:
    """Recover llama3 rope_scaling from the converter's per-frequency divisors.

    The converter writes, for each of head_dim/2 frequencies, 1 (high frequencies),
    `factor` (low frequencies) or a smooth blend. We read `factor` as the largest divisor,
    recompute the table with Llama 3's published band edges, and accept only an exact match.
    """
    divisors = np.asarray(gguf.quants.dequantize(rope_freqs.data, rope_freqs.tensor_type), np.float64).ravel()
    if divisors.shape != (head_dim // 2,):
        raise ModelLoadError(f"GGUF tensor 'rope_freqs.weight' has {divisors.size} values, expected {head_dim // 2}")
    params = {
        "rope_type": "llama3",
        "factor": float(divisors.max()),
        "low_freq_factor": _LLAMA3_LOW_FREQ_FACTOR,
        "high_freq_factor": _LLAMA3_HIGH_FREQ_FACTOR,
        "original_max_position_embeddings": _LLAMA3_ORIGINAL_CONTEXT,
    }
    if not np.allclose(_llama3_divisors(head_dim, theta, params), divisors, rtol=1e-4, atol=1e-6):
        raise UnsupportedModelError(
            "GGUF tensor 'rope_freqs.weight' does not match Llama 3 rope scaling with "
            f"low_freq_factor={_LLAMA3_LOW_FREQ_FACTOR}, high_freq_factor={_LLAMA3_HIGH_FREQ_FACTOR}, "
            f"original context {_LLAMA3_ORIGINAL_CONTEXT}; this RoPE variant is not supported"
        )
    return params


def _llama3_divisors(head_dim: int, theta: float, p: Mapping[str, Any]) -> np.ndarray:
    """The divisor table llama.cpp's converter writes for llama3 scaling (same band rules)."""
    inv_freq = 1.0 / theta ** (np.arange(0, head_dim, 2, dtype=np.float32) / head_dim)
    wavelen = 2 * math.pi / inv_freq.astype(np.float64)
    old = p["original_max_position_embeddings"]
    low, high, factor = p["low_freq_factor"], p["high_freq_factor"], p["factor"]
    smooth = (old / wavelen - low) / (high - low)
    blended = 1.0 / ((1.0 - smooth) / factor + smooth)
    return np.where(wavelen < old / high, 1.0, np.where(wavelen > old / low, factor, blended))


# -- tensors ----------------------------------------------------------------------


def iter_gguf_tensors(reader: GGUFReader, config: ModelConfig) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield `(hf_name, float32 tensor)` in file order, one dequantized tensor at a time.

    Every name and shape is checked against `config` before the first tensor is yielded,
    so a bad file fails fast rather than after minutes of dequantization. Each yielded
    tensor owns its memory (never a view of the memory-mapped file).
    """
    plan = _plan(reader, config)
    permuted = _architecture(reader) in _PERMUTED_QK_ARCHS
    for t, hf_name in plan:
        w = _dequantize(t).reshape(_expected_shape(hf_name, config))
        if permuted and hf_name.endswith(("q_proj.weight", "q_proj.bias")):
            w = undo_rope_permutation(w, config.num_attention_heads)
        elif permuted and hf_name.endswith(("k_proj.weight", "k_proj.bias")):
            w = undo_rope_permutation(w, config.num_key_value_heads)
        yield hf_name, torch.from_numpy(np.ascontiguousarray(w))


def undo_rope_permutation(w: np.ndarray, n_head: int) -> np.ndarray:
    """Inverse of llama.cpp's q/k row permutation, for weights (out, in) or biases (out,).

    Within each head the converter reorders rows [first half | second half] into
    interleaved pairs (r0, r_{hd/2}, r1, r_{hd/2+1}, ...). Reading the rows as
    (head, pair, member) and swapping the last two axes restores (head, half, index).
    """
    out = w.shape[0]
    if out % (2 * n_head):
        raise ModelLoadError(f"cannot un-permute {out} rows over {n_head} heads: rows per head must be even")
    half = out // n_head // 2
    rest = w.shape[1:]
    pairs = w.reshape(n_head, half, 2, *rest)  # (n_head, hd//2, 2, *rest)
    return pairs.swapaxes(1, 2).reshape(w.shape)  # (n_head, 2, hd//2, *rest) -> (out, *rest)


def _architecture(reader: GGUFReader) -> str:
    field = reader.get_field("general.architecture")
    return "" if field is None else str(_decode_field(field))


def _plan(reader: GGUFReader, config: ModelConfig) -> list[tuple[ReaderTensor, str]]:
    """Map every GGUF tensor to its HF name, check shapes, and check that nothing is missing."""
    plan: list[tuple[ReaderTensor, str]] = []
    for t in reader.tensors:
        hf_name = hf_tensor_name(t.name, config.num_hidden_layers)
        if hf_name is None:
            continue
        expected = _expected_shape(hf_name, config)
        found = tuple(reversed([int(d) for d in t.shape]))  # GGUF ne=[in, out] -> HF [out, in]
        if _squeeze(found) != expected:
            raise ModelLoadError(
                f"GGUF tensor {t.name!r} has shape {list(found)} but the config implies "
                f"{list(expected)} for {hf_name}"
            )
        plan.append((t, hf_name))
    missing = sorted(_required_names(config) - {name for _, name in plan})
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise ModelLoadError(f"GGUF file lacks tensors the config needs: {shown}")
    return plan


def _squeeze(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Drop leading 1s: some writers store a vector as [1, n]."""
    while len(shape) > 1 and shape[0] == 1:
        shape = shape[1:]
    return shape


def hf_tensor_name(gguf_name: str, num_layers: int) -> str | None:
    """The HF state-dict name of a GGUF tensor, or None for tensors that are skipped."""
    if gguf_name in _GLOBAL_TENSORS:
        return _GLOBAL_TENSORS[gguf_name]
    if gguf_name in _SKIPPED_GLOBAL:
        return None
    m = _BLOCK_NAME.fullmatch(gguf_name)
    if m is not None:
        layer, suffix = int(m.group(1)), m.group(2)
        if suffix in _SKIPPED_BLOCK:
            return None
        if suffix in _BLOCK_TENSORS and layer < num_layers:
            return f"model.layers.{layer}.{_BLOCK_TENSORS[suffix]}"
        if suffix in _BLOCK_TENSORS:
            raise ModelLoadError(f"GGUF tensor {gguf_name!r} names layer {layer}, but block_count is {num_layers}")
    raise ModelLoadError(f"unknown GGUF tensor {gguf_name!r}: loopcoder does not know where it belongs")


def _required_names(config: ModelConfig) -> set[str]:
    names = {"model.embed_tokens.weight", "model.norm.weight"}
    if not config.tie_word_embeddings:
        names.add("lm_head.weight")
    block = [s for s in _BLOCK_TENSORS if s not in _QKV_BIASES or config.qkv_bias]
    for i in range(config.num_hidden_layers):
        names.update(f"model.layers.{i}.{_BLOCK_TENSORS[s]}" for s in block)
    return names


def _expected_shape(hf_name: str, c: ModelConfig) -> tuple[int, ...]:
    q_rows = c.num_attention_heads * c.head_dim
    kv_rows = c.num_key_value_heads * c.head_dim
    h, ffn = c.hidden_size, c.intermediate_size
    suffix = ".".join(hf_name.split(".")[-2:])  # "q_proj.weight", "norm.weight", ...
    shapes = {
        "embed_tokens.weight": (c.vocab_size, h),
        "lm_head.weight": (c.vocab_size, h),
        "norm.weight": (h,),
        "input_layernorm.weight": (h,),
        "post_attention_layernorm.weight": (h,),
        "q_proj.weight": (q_rows, h),
        "k_proj.weight": (kv_rows, h),
        "v_proj.weight": (kv_rows, h),
        "o_proj.weight": (h, q_rows),
        "q_proj.bias": (q_rows,),
        "k_proj.bias": (kv_rows,),
        "v_proj.bias": (kv_rows,),
        "gate_proj.weight": (ffn, h),
        "up_proj.weight": (ffn, h),
        "down_proj.weight": (h, ffn),
    }
    return shapes[suffix]


def _dequantize(t: ReaderTensor) -> np.ndarray:
    """float32 values of a tensor, in a fresh array (the reader's arrays view the mmap)."""
    try:
        w = gguf.quants.dequantize(t.data, t.tensor_type)
    except NotImplementedError:
        raise UnsupportedModelError(
            f"GGUF tensor {t.name!r} has type {t.tensor_type.name}, which the gguf package cannot dequantize"
        ) from None
    if w.dtype != np.float32 or not w.flags.writeable or isinstance(w, np.memmap):
        w = np.array(w, dtype=np.float32)
    return w
