"""GGUF tensors as HF-named float32 tensors, each checked against the config, one at a time.

Tensors are dequantized with `gguf.quants` one at a time, so at most one float32 copy of
a weight is alive per step of the iterator. Two layout facts of llama.cpp's converter are
undone here:

- GGUF stores dimensions innermost first (`ne = [in, out]`); HF shapes are `[out, in]`.
- For architecture `llama` the converter permutes the rows of q/k (weights and biases) so
  that llama.cpp can apply RoPE to adjacent pairs; HF rotates halves. `qwen2`, `qwen3` and
  `starcoder2` files are written unpermuted (llama.cpp uses NeoX-style RoPE for them).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import gguf
import numpy as np
import torch
from gguf import GGUFReader, ReaderTensor

from loopcoder.kernels.gguf_linear import GGUFWeight, gguf_type

from ..config import ModelConfig
from ..errors import ModelLoadError, UnsupportedModelError
from .gguf_file import gguf_architecture

# Architectures whose q/k rows llama.cpp's converter permuted for interleaved RoPE.
_PERMUTED_QK_ARCHS = frozenset({"llama"})

_GLOBAL_TENSORS = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output_norm.bias": "model.norm.bias",  # starcoder2's LayerNorms
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
    "attn_q_norm.weight": "self_attn.q_norm.weight",  # qwen3
    "attn_k_norm.weight": "self_attn.k_norm.weight",
    "attn_q.bias": "self_attn.q_proj.bias",
    "attn_k.bias": "self_attn.k_proj.bias",
    "attn_v.bias": "self_attn.v_proj.bias",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
    "attn_norm.bias": "input_layernorm.bias",  # starcoder2
    "ffn_norm.bias": "post_attention_layernorm.bias",
    "attn_output.bias": "self_attn.o_proj.bias",
    "ffn_up.bias": "mlp.up_proj.bias",
    "ffn_down.bias": "mlp.down_proj.bias",
    "ffn_gate.bias": "mlp.gate_proj.bias",
}
# The block tensors only some configs have, and whether `config` has them.
_OPTIONAL_BLOCK_TENSORS: dict[str, Callable[[ModelConfig], bool]] = {
    **dict.fromkeys(("attn_q.bias", "attn_k.bias", "attn_v.bias"), lambda c: c.qkv_bias),
    **dict.fromkeys(("attn_q_norm.weight", "attn_k_norm.weight"), lambda c: c.qk_norm),
    **dict.fromkeys(("attn_norm.bias", "ffn_norm.bias"), lambda c: c.norm == "layer"),
    "attn_output.bias": lambda c: c.o_bias,
    "ffn_gate.weight": lambda c: c.mlp == "swiglu",
    **dict.fromkeys(("ffn_up.bias", "ffn_down.bias"), lambda c: c.mlp_bias),
    "ffn_gate.bias": lambda c: c.mlp_bias and c.mlp == "swiglu",
}
# Tensors that carry nothing the model needs as a weight:
# - rope_freqs.weight: Llama 3 RoPE scaling, read by config_from_gguf instead.
# - blk.N.attn_rot_embd.weight: a precomputed inv_freq table (old conversions); it follows
#   from rope_theta and head_dim.
_SKIPPED_GLOBAL = frozenset({"rope_freqs.weight"})
_SKIPPED_BLOCK = frozenset({"attn_rot_embd.weight"})

_BLOCK_NAME = re.compile(r"blk\.(\d+)\.(.+)")


def iter_gguf_tensors(reader: GGUFReader, config: ModelConfig,
                      keep_blocks: bool = False) -> Iterator[tuple[str, torch.Tensor | GGUFWeight]]:
    """Yield `(hf_name, float32 tensor)` in file order, one dequantized tensor at a time.

    With `keep_blocks`, the weight of every linear layer stored in a type
    kernels/gguf_linear.py computes comes as a `GGUFWeight` instead: the file's blocks,
    copied, never dequantized. A model whose embedding is its LM head (tied) then also gets
    `lm_head.weight` as the embedding's blocks.

    Every name and shape is checked against `config` before the first tensor is yielded,
    so a bad file fails fast rather than after minutes of dequantization. Each yielded
    tensor owns its memory (never a view of the memory-mapped file).
    """
    plan = _plan(reader, config)
    permuted = gguf_architecture(reader) in _PERMUTED_QK_ARCHS
    for t, hf_name in plan:
        blocks = keep_blocks and hf_name.endswith(_LINEAR_WEIGHTS) and computed_as_stored(t)
        w = np.array(t.data).reshape(int(t.shape[1]), -1) if blocks else _dequantize(t).reshape(_expected_shape(hf_name, config))
        if permuted and hf_name.endswith(("q_proj.weight", "q_proj.bias")):
            w = undo_rope_permutation(w, config.num_attention_heads)
        elif permuted and hf_name.endswith(("k_proj.weight", "k_proj.bias")):
            w = undo_rope_permutation(w, config.num_key_value_heads)
        if blocks:
            yield hf_name, GGUFWeight(torch.from_numpy(np.ascontiguousarray(w)), gguf_type(t.tensor_type.name), int(t.shape[0]))
        else:
            yield hf_name, torch.from_numpy(np.ascontiguousarray(w))
        if (keep_blocks and config.tie_word_embeddings and hf_name == "model.embed_tokens.weight"
                and computed_as_stored(t)):
            yield "lm_head.weight", GGUFWeight(torch.from_numpy(np.array(t.data).reshape(int(t.shape[1]), -1)),
                                               gguf_type(t.tensor_type.name), int(t.shape[0]))


# The weights that can stay in the file's blocks: those of linear layers (the LM head included).
_LINEAR_WEIGHTS = ("_proj.weight", "lm_head.weight")


def computed_as_stored(t: ReaderTensor) -> bool:
    """Whether kernels/gguf_linear.py computes this 2-D tensor from its blocks."""
    kind = gguf_type(t.tensor_type.name)
    return kind is not None and len(t.shape) == 2 and int(t.shape[0]) % kind.block_elems == 0


def blocks_share(reader: GGUFReader) -> float:
    """The share of the linear layers' bytes stored in types computed as stored (0..1)."""
    linear = [t for t in reader.tensors if t.name.endswith(("attn_q.weight", "attn_k.weight", "attn_v.weight",
                                                          "attn_output.weight", "ffn_gate.weight", "ffn_up.weight",
                                                          "ffn_down.weight", "output.weight"))]
    total = sum(int(t.n_bytes) for t in linear)
    return sum(int(t.n_bytes) for t in linear if computed_as_stored(t)) / total if total else 0.0


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


def _plan(reader: GGUFReader, config: ModelConfig) -> list[tuple[ReaderTensor, str]]:
    """Map every GGUF tensor to its HF name, check shapes, and check that nothing is missing."""
    plan: list[tuple[ReaderTensor, str]] = []
    required = _required_names(config)
    for t in reader.tensors:
        hf_name = hf_tensor_name(t.name, config.num_hidden_layers)
        if hf_name is None:
            continue
        if hf_name not in required:
            raise ModelLoadError(f"GGUF tensor {t.name!r} has no place in this {config.model_type} model ({hf_name})")
        if not readable_type(t.tensor_type):
            raise UnsupportedModelError(
                f"GGUF tensor {t.name!r} has type {t.tensor_type.name}, which loopcoder cannot read; it reads "
                f"{', '.join(sorted(READABLE_TYPES))}")
        expected = _expected_shape(hf_name, config)
        found = tuple(reversed([int(d) for d in t.shape]))  # GGUF ne=[in, out] -> HF [out, in]
        if _squeeze(found) != expected:
            raise ModelLoadError(
                f"GGUF tensor {t.name!r} has shape {list(found)} but the config implies "
                f"{list(expected)} for {hf_name}"
            )
        plan.append((t, hf_name))
    missing = sorted(required - {name for _, name in plan})
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
    if config.norm == "layer":
        names.add("model.norm.bias")
    if not config.tie_word_embeddings:
        names.add("lm_head.weight")
    block = [s for s in _BLOCK_TENSORS if _OPTIONAL_BLOCK_TENSORS.get(s, lambda c: True)(config)]
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
        "norm.bias": (h,),
        "input_layernorm.weight": (h,),
        "input_layernorm.bias": (h,),
        "post_attention_layernorm.weight": (h,),
        "post_attention_layernorm.bias": (h,),
        "q_proj.weight": (q_rows, h),
        "k_proj.weight": (kv_rows, h),
        "v_proj.weight": (kv_rows, h),
        "o_proj.weight": (h, q_rows),
        "q_norm.weight": (c.head_dim,),
        "k_norm.weight": (c.head_dim,),
        "q_proj.bias": (q_rows,),
        "k_proj.bias": (kv_rows,),
        "v_proj.bias": (kv_rows,),
        "o_proj.bias": (h,),
        "gate_proj.weight": (ffn, h),
        "up_proj.weight": (ffn, h),
        "gate_proj.bias": (ffn,),
        "up_proj.bias": (ffn,),
        "down_proj.weight": (h, ffn),
        "down_proj.bias": (h,),
    }
    return shapes[suffix]


# F32 and F16 are read as they are; every other type the gguf package dequantizes.
READABLE_TYPES = frozenset({"F32", "F16", *(k.name for k in gguf.quants._type_traits)})


def readable_type(kind: gguf.GGMLQuantizationType) -> bool:
    return kind.name in READABLE_TYPES


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
