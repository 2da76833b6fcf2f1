"""StarCoder2 GGUF files (`general.architecture = starcoder2`) against transformers.

A small random Starcoder2ForCausalLM is written as llama.cpp's converter writes it: names
from the gguf package's own tensor map, dims reversed, q/k rows as they are (only llama
files are permuted), every bias, the LayerNorm epsilon under
`starcoder2.attention.layer_norm_epsilon`. The engine's logits must be transformers' on
the values the file holds: exactly (1e-4) for F32; for quantized types, against the model
whose weights are the file's blocks dequantized.
"""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import pytest
import torch

from loopcoder.engine.errors import ModelLoadError
from loopcoder.engine.loader import load_model
from loopcoder.engine.quantization import QuantLinear
from loopcoder.engine.weights.gguf_config import config_from_gguf
from loopcoder.engine.weights.gguf_file import open_gguf, read_gguf_metadata
from loopcoder.kernels.gguf_linear import GGUFWeight

from .test_gguf_blocks import add_stored, finish

transformers = pytest.importorskip("transformers")

TOKENS = ["<|endoftext|>", "<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<fim_pad>", "<repo_name>", "<file_sep>",
          "h", "e", "he"] + [f"t{i}" for i in range(54)]
# 256 inputs: every GGUF type's blocks fit the rows (the K-quants' are 256 wide).
DIMS = dict(vocab_size=len(TOKENS), hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=256)
NORM_EPS = 1e-3
IDS = [5, 17, 3, 42, 8, 23, 61, 12, 9, 30, 7, 50, 1, 2, 3, 4]


def hf_model(tied: bool = True, window: int | None = None):
    torch.manual_seed(0)
    config = transformers.Starcoder2Config(**DIMS, norm_epsilon=NORM_EPS, rope_theta=100000.0, sliding_window=window,
                                           tie_word_embeddings=tied, bos_token_id=0, eos_token_id=0)
    model = transformers.Starcoder2ForCausalLM(config)
    with torch.no_grad():  # HF starts biases at zero and norms at one: make them count
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.add_(torch.randn_like(p) * 0.1)
    return model.eval()


def write(path: Path, hf, kind: str = "F32", *, window_key: int | None = None, drop_keys=()) -> Path:
    """`hf` as a starcoder2 GGUF: projections (and the embedding) in `kind`, the rest F32."""
    c = hf.config
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.STARCODER2, c.num_hidden_layers)
    w = gguf.GGUFWriter(path, "starcoder2")
    meta = {
        "block_count": lambda: w.add_block_count(c.num_hidden_layers),
        "context_length": lambda: w.add_context_length(c.max_position_embeddings),
        "embedding_length": lambda: w.add_embedding_length(c.hidden_size),
        "feed_forward_length": lambda: w.add_feed_forward_length(c.intermediate_size),
        "head_count": lambda: w.add_head_count(c.num_attention_heads),
        "head_count_kv": lambda: w.add_head_count_kv(c.num_key_value_heads),
        "rope_freq_base": lambda: w.add_rope_freq_base(c.rope_parameters["rope_theta"]),
        "layer_norm_eps": lambda: w.add_layer_norm_eps(c.norm_epsilon),
    }
    for key, add in meta.items():
        if key not in drop_keys:
            add()
    if window_key is not None:
        w.add_sliding_window(window_key)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("starcoder")
    w.add_token_list(TOKENS)
    w.add_token_types([3] * 7 + [1] * (len(TOKENS) - 7))
    w.add_token_merges(["h e"])
    w.add_bos_token_id(0)
    w.add_eos_token_id(0)
    w.add_add_bos_token(False)
    for hf_name, tensor in hf.state_dict().items():
        if hf_name == "lm_head.weight" and c.tie_word_embeddings:
            continue  # a tied checkpoint stores the embedding once
        add_stored(w, names.get_name(hf_name, try_suffixes=(".weight", ".bias")), tensor.numpy(), {"*": kind})
    return finish(w, path)


def as_stored(hf, path: Path):
    """`hf` with every weight replaced by the file's values (quantized ones dequantized)."""
    reader = gguf.GGUFReader(path)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.STARCODER2, hf.config.num_hidden_layers)
    stored = {t.name: gguf.quants.dequantize(t.data, t.tensor_type) for t in reader.tensors}
    with torch.no_grad():
        for hf_name, p in hf.state_dict().items():
            name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
            if name in stored:
                p.copy_(torch.from_numpy(np.array(stored[name], np.float32)).reshape(p.shape))
    return hf


def hf_logits(hf, ids=IDS) -> torch.Tensor:
    with torch.no_grad():
        return hf(torch.tensor([ids])).logits[0]


@pytest.mark.parametrize("tied", [True, False])
def test_f32_file_equals_transformers(tmp_path, tied):
    hf = hf_model(tied)
    engine = load_model(write(tmp_path / "sc2.gguf", hf), quant="none", dtype=torch.float32)
    cfg = engine.model_config
    assert (cfg.model_type, cfg.norm, cfg.mlp, cfg.tie_word_embeddings) == ("starcoder2", "layer", "gelu", tied)
    assert cfg.norm_eps == pytest.approx(NORM_EPS) and cfg.qkv_bias and cfg.o_bias and cfg.mlp_bias
    expected = hf_logits(hf)
    torch.testing.assert_close(engine.logits(IDS), expected, atol=1e-4, rtol=1e-4)
    # Prefill, then decode steps on the paged cache.
    torch.testing.assert_close(engine.sync("d", IDS[:10]), expected[9], atol=1e-4, rtol=1e-4)
    for t in range(10, len(IDS)):
        torch.testing.assert_close(engine.sync("d", IDS[: t + 1]), expected[t], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("kind", ["Q8_0", "Q4_K"])
def test_quantized_file_equals_transformers_on_its_values(tmp_path, kind):
    hf = hf_model()
    path = write(tmp_path / "sc2.gguf", hf, kind)
    engine = load_model(path, quant="none", dtype=torch.float32)
    expected = hf_logits(as_stored(hf, path))
    assert not torch.allclose(expected, hf_logits(hf_model()), atol=1e-3)  # the blocks did change the weights
    torch.testing.assert_close(engine.logits(IDS), expected, atol=1e-4, rtol=1e-4)


def test_gguf_blocks_keep_the_biases_float(tmp_path):
    """--quant gguf: the projections stay in the file's blocks, their biases float; q/k/v
    join with their biases; the logits are those of the dequantized file up to the
    kernel's int8 activations."""
    hf = hf_model()
    path = write(tmp_path / "sc2.gguf", hf, "Q8_0")
    floats = load_model(path, quant="none", dtype=torch.float32).logits(IDS)
    engine = load_model(path, quant="gguf", dtype=torch.float32)
    blocks = engine.logits(IDS)
    # Its LayerNorm and GELU MLP are not the C decode step's: decode steps run layer by layer.
    assert engine.model.cpu_decoder is None
    assert engine.model.cpu_decoder_status.startswith("off: its layer norms and gelu MLP")
    layer = engine.model.model.layers[1]
    attn, mlp = layer.self_attn, layer.mlp
    for linear in (attn.qkv_proj, attn.o_proj, mlp.up_proj, mlp.down_proj):
        assert isinstance(linear, QuantLinear) and isinstance(linear.weight_q, GGUFWeight)
        assert linear.bias is not None and linear.bias.dtype == torch.float32
    hf_attn = hf.model.layers[1].self_attn
    want_qkv = torch.cat([hf_attn.q_proj.bias, hf_attn.k_proj.bias, hf_attn.v_proj.bias])
    torch.testing.assert_close(attn.qkv_proj.bias.detach(), want_qkv.detach())
    torch.testing.assert_close(mlp.down_proj.bias.detach(), hf.model.layers[1].mlp.c_proj.bias.detach())
    assert float((blocks - floats).norm() / floats.norm()) < 0.05
    # Decode steps through the blocks (the kernel's few-rows path) agree with their own prefill.
    engine.sync("d", IDS[:12])
    torch.testing.assert_close(engine.sync("d", IDS), blocks[-1], atol=1e-3, rtol=1e-3)


def test_sliding_window_from_metadata(tmp_path):
    """The converter writes no window for starcoder2 (llama.cpp attends to everything); a
    file that carries `starcoder2.attention.sliding_window` gets it."""
    hf = hf_model(window=6)
    path = write(tmp_path / "w.gguf", hf, window_key=6)
    engine = load_model(path, quant="none", dtype=torch.float32)
    assert engine.model_config.sliding_window == 6
    torch.testing.assert_close(engine.logits(IDS), hf_logits(hf), atol=1e-4, rtol=1e-4)
    plain = write(tmp_path / "plain.gguf", hf)
    reader = open_gguf(plain)
    assert config_from_gguf(read_gguf_metadata(reader), reader.tensors).sliding_window is None


def test_missing_layer_norm_epsilon_is_named(tmp_path):
    path = write(tmp_path / "bad.gguf", hf_model(), drop_keys=("layer_norm_eps",))
    reader = open_gguf(path)
    with pytest.raises(ModelLoadError, match=r"starcoder2\.attention\.layer_norm_epsilon"):
        config_from_gguf(read_gguf_metadata(reader), reader.tensors)


def test_missing_bias_is_named(tmp_path):
    hf = hf_model()
    del hf.model.layers[1].mlp.c_fc.bias  # state_dict() no longer has it
    hf.model.layers[1].mlp.c_fc.register_parameter("bias", None)
    path = write(tmp_path / "bad.gguf", hf)
    with pytest.raises(ModelLoadError, match=r"model\.layers\.1\.mlp\.up_proj\.bias"):
        load_model(path, quant="none", dtype=torch.float32)


def test_fim_and_repository_tokens(tmp_path):
    """StarCoder2's vocabulary: the StarCoder FIM sentinels are detected, and <file_sep> and
    <repo_name> are single special tokens."""
    engine = load_model(write(tmp_path / "sc2.gguf", hf_model()), quant="none", dtype=torch.float32)
    tok = engine.tokenizer
    assert tok.fim_format.name == "starcoder"
    assert tok.encode_fim("he", "h") == [1, 9, 3, 7, 2]  # <fim_prefix> he <fim_suffix> h <fim_middle>
    for name in ("<file_sep>", "<repo_name>"):
        assert tok.encode(name) == [tok.token_to_id(name)]
