"""A `ModelConfig` from a GGUF file's metadata and tensor list.

Metadata keys `{arch}.*` and `tokenizer.ggml.*` become config.json keys. Some of the
config is only in the tensor list: tied embeddings (no `output.weight`), q/k/v bias on
llama files, every bias on starcoder2 files, and Llama 3.x frequency scaling, which is
not stored as metadata but as a `rope_freqs.weight` tensor of per-frequency divisors;
`config_from_gguf` turns it back into a `RopeScaling` (and `gguf_tensors.iter_gguf_tensors`
skips it).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import gguf
import numpy as np
from gguf import ReaderTensor

from ..config import ModelConfig
from ..errors import ModelLoadError, UnsupportedModelError

# GGUF architecture -> HF `architectures` entry. The key doubles as our model_type.
_ARCHITECTURES = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM",
                  "starcoder2": "Starcoder2ForCausalLM"}


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
    o_bias, q_bias = "blk.0.attn_output.bias" in by_name, "blk.0.attn_q.bias" in by_name
    if o_bias and arch not in ("starcoder2", "llama", "qwen3"):
        raise UnsupportedModelError(f"GGUF tensor 'blk.0.attn_output.bias' (o_proj bias) is not supported for {arch}")
    if arch in ("llama", "qwen3") and o_bias != q_bias:  # one attention_bias covers q, k, v and o
        raise UnsupportedModelError(f"this {arch} GGUF has a bias on {'o_proj' if o_bias else 'q_proj'} but not on "
                                    f"{'q_proj' if o_bias else 'o_proj'}: {arch}'s attention_bias puts one on both")


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
        "max_position_embeddings": get("context_length", 4096),
        "tie_word_embeddings": "output.weight" not in by_name,
        "rope_scaling": _rope_scaling(meta, arch, by_name.get("rope_freqs.weight"), head_dim, theta),
        "bos_token_id": meta.get("tokenizer.ggml.bos_token_id"),
        "eos_token_id": _eos_token_ids(meta),
        "torch_dtype": "float32",
    }
    if arch == "starcoder2":
        # llama.cpp reads the LayerNorm epsilon as required; the converter writes no window
        # (llama.cpp attends to every position), a file may still carry one.
        raw |= {"norm_epsilon": need("attention.layer_norm_epsilon"), "use_bias": "blk.0.attn_q.bias" in by_name,
                "hidden_act": "gelu_pytorch_tanh", "sliding_window": get("attention.sliding_window")}
    else:
        raw["rms_norm_eps"] = get("attention.layer_norm_rms_epsilon", 1e-6)
    if arch in ("llama", "qwen3"):  # optional there: q/k/v/o biases, and Llama's MLP biases
        raw["attention_bias"] = "blk.0.attn_q.bias" in by_name
    if arch == "llama":
        raw["mlp_bias"] = "blk.0.ffn_up.bias" in by_name
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
