"""--quant gguf: a GGUF file's linear layers computed from its own blocks.

Small random llama/qwen2 models are written as llama.cpp would (q/k rows permuted for
llama), every projection in one type, or mixed as a Q4_K_M file mixes them. Loaded with
`--quant gguf` they must keep the file's bytes and give the logits of the same file
dequantized to float32 (`--quant none`), up to the kernel's int8 activations.
"""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import pytest
import torch

from loopcoder.engine import loader
from loopcoder.engine.cuda_graphs import GRAPHS_ENV
from loopcoder.engine.errors import InvalidRequestError, ModelLoadError, UnsupportedModelError
from loopcoder.engine.loader import load_model, resolve_precision
from loopcoder.engine.parallel.launch import check_launch
from loopcoder.engine.quantization import QuantLinear, check_quant_device
from loopcoder.engine.sampling import SamplingParams
from loopcoder.kernels import gguf_linear as G

from ..kernels.gguf_helpers import quantize
from .helpers import tiny_config
from .test_gguf import add_model_metadata, converter_permute, gguf_name

TOKENS = ["<s>", "</s>", "h", "e", "he"] + [f"t{i}" for i in range(59)]
MERGES = ["h e"]

DIMS = dict(hidden=256, ffn=512, heads=4, kv_heads=2, head_dim=64, layers=2, vocab=len(TOKENS))
TYPES = list(G.GGUF_TYPES)
PROJECTIONS = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")


def state_dict(arch: str, tied: bool, seed: int = 0, biases: bool = False) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    h, f, v = DIMS["hidden"], DIMS["ffn"], DIMS["vocab"]
    q, kv = DIMS["heads"] * DIMS["head_dim"], DIMS["kv_heads"] * DIMS["head_dim"]

    def r(*shape: int, std: float = 0.08) -> np.ndarray:
        return (rng.standard_normal(shape) * std).astype(np.float32)

    sd = {"model.embed_tokens.weight": r(v, h, std=1.0), "model.norm.weight": 1 + r(h)}
    if not tied:
        sd["lm_head.weight"] = r(v, h)
    for i in range(DIMS["layers"]):
        p = f"model.layers.{i}."
        sd |= {p + "input_layernorm.weight": 1 + r(h), p + "post_attention_layernorm.weight": 1 + r(h),
               p + "self_attn.q_proj.weight": r(q, h), p + "self_attn.k_proj.weight": r(kv, h),
               p + "self_attn.v_proj.weight": r(kv, h), p + "self_attn.o_proj.weight": r(h, q),
               p + "mlp.gate_proj.weight": r(f, h), p + "mlp.up_proj.weight": r(f, h),
               p + "mlp.down_proj.weight": r(h, f)}
        if arch == "qwen2" or biases:
            sd |= {p + "self_attn.q_proj.bias": r(q), p + "self_attn.k_proj.bias": r(kv),
                   p + "self_attn.v_proj.bias": r(kv)}
        if biases:  # Llama's attention_bias (o too) and mlp_bias
            sd |= {p + "self_attn.o_proj.bias": r(h), p + "mlp.gate_proj.bias": r(f), p + "mlp.up_proj.bias": r(f),
                   p + "mlp.down_proj.bias": r(h)}
        if arch == "qwen3":
            sd |= {p + "self_attn.q_norm.weight": 1 + r(DIMS["head_dim"]), p + "self_attn.k_norm.weight": 1 + r(DIMS["head_dim"])}
    return sd


def write(path: Path, arch: str, types: dict[str, str], *, tied: bool = False, raw: dict | None = None,
          biases: bool = False) -> Path:
    """A GGUF of a random model; `types` maps a GGUF tensor name's part ("attn_q", "token_embd",
    "output", "*") to the type it is stored in (F32 where none matches); `raw` replaces
    tensors by (bytes, type)."""
    w = gguf.GGUFWriter(path, arch)
    add_model_metadata(w, DIMS, TOKENS, MERGES, rope_base=10000.0)
    w.add_key_length(DIMS["head_dim"])
    w.add_value_length(DIMS["head_dim"])
    raw = raw or {}
    for hf, t in state_dict(arch, tied, biases=biases).items():
        name = gguf_name(hf)
        if name in raw:
            w.add_tensor(name, raw[name][0], raw_dtype=raw[name][1])
            continue
        if arch == "llama" and (".attn_q." in name or ".attn_k." in name):  # weights and biases, as the converter
            t = converter_permute(t, DIMS["heads"] if ".attn_q." in name else DIMS["kv_heads"])
        add_stored(w, name, t, types)
    return finish(w, path)


def add_stored(w: gguf.GGUFWriter, name: str, t: np.ndarray, types: dict[str, str]) -> None:
    """Tensor `name` in the type `types` gives its part ("*": every linear layer's), F32 where none does."""
    part = name.split(".")[-2]
    kind = types.get(part, types.get("*")) if t.ndim == 2 and part in (*PROJECTIONS, "token_embd", "output") else None
    if kind is None or kind == "F32":
        w.add_tensor(name, t)
    else:
        w.add_tensor(name, quantize(t, kind), raw_dtype=gguf.GGMLQuantizationType[kind])


def finish(w: gguf.GGUFWriter, path: Path) -> Path:
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


IDS = [5, 17, 3, 42, 8, 23, 61, 12, 9, 30, 7, 50]


def logits_of(path: Path, quant: str) -> tuple[torch.Tensor, object]:
    engine = load_model(path, quant=quant, dtype=torch.float32)
    return engine.logits(IDS), engine


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def gguf_layers(engine) -> dict[str, G.GGUFWeight]:
    return {name: m.weight_q for name, m in engine.model.named_modules()
            if isinstance(m, QuantLinear) and isinstance(m.weight_q, G.GGUFWeight)}


@pytest.mark.parametrize("kind", TYPES)
@pytest.mark.parametrize("arch", ["llama", "qwen2", "qwen3"])
def test_blocks_compute_the_files_weights(tmp_path, arch, kind):
    path = write(tmp_path / "m.gguf", arch, {"*": kind, "token_embd": "F32", "output": "Q8_0"})
    floats, _ = logits_of(path, "none")
    blocks, engine = logits_of(path, "gguf")
    layers = gguf_layers(engine)
    # q/k/v and gate/up are joined (one type), o and down alone, and the Q8_0 LM head.
    assert {w.type.name for name, w in layers.items() if name != "lm_head"} == {kind}
    assert layers["lm_head"].type.name == "Q8_0"
    assert len(layers) == 4 * DIMS["layers"] + 1
    # int8 activations per 32 through 2 layers and the head: a few % of the logits' norm at most.
    assert rel_err(blocks, floats) < 0.05, (arch, kind)
    top2 = floats.topk(2, dim=-1).values
    clear = top2[:, 0] - top2[:, 1] > 0.1  # a random model has near-ties; where it does not, the argmax holds
    assert torch.equal(blocks.argmax(-1)[clear], floats.argmax(-1)[clear])


def test_qwen3_gguf_matches_transformers(tmp_path):
    """A qwen3 GGUF (q/k norms, rows not permuted) read as float32 equals HF's Qwen3 on the
    same values: names, shapes and the norms' place before RoPE."""
    transformers = pytest.importorskip("transformers")
    from loopcoder.engine.weights.gguf_file import open_gguf

    path = write(tmp_path / "q3.gguf", "qwen3", {"*": "F32"})
    ours = load_model(path, quant="none", dtype=torch.float32)
    cfg = ours.model_config
    hf = transformers.Qwen3ForCausalLM(transformers.Qwen3Config(
        vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_hidden_layers, num_attention_heads=cfg.num_attention_heads,
        num_key_value_heads=cfg.num_key_value_heads, head_dim=cfg.head_dim, rope_theta=cfg.rope_theta,
        rms_norm_eps=cfg.norm_eps, max_position_embeddings=cfg.max_position_embeddings,
        tie_word_embeddings=cfg.tie_word_embeddings)).eval()
    reader = open_gguf(path)
    from loopcoder.engine.weights.gguf_tensors import iter_gguf_tensors

    hf.load_state_dict(dict(iter_gguf_tensors(reader, cfg)), strict=True)
    with torch.no_grad():
        expected = hf(torch.tensor([IDS])).logits[0]
    torch.testing.assert_close(ours.logits(IDS), expected, atol=1e-4, rtol=1e-4)


def test_llama_gguf_with_every_bias_matches_transformers(tmp_path):
    """attention_bias (q, k, v and o) and mlp_bias (gate, up, down): read from the file, equal to HF's
    Llama on the same values; as GGUF blocks the biases go through the joined layers and the C step."""
    transformers = pytest.importorskip("transformers")
    from loopcoder.engine.weights.gguf_file import open_gguf
    from loopcoder.engine.weights.gguf_tensors import iter_gguf_tensors

    path = write(tmp_path / "b.gguf", "llama", {"*": "F32"}, biases=True)
    ours = load_model(path, quant="none", dtype=torch.float32)
    cfg = ours.model_config
    assert (cfg.qkv_bias, cfg.o_bias, cfg.mlp_bias) == (True, True, True)
    hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_hidden_layers, num_attention_heads=cfg.num_attention_heads,
        num_key_value_heads=cfg.num_key_value_heads, head_dim=cfg.head_dim, rope_theta=cfg.rope_theta,
        rms_norm_eps=cfg.norm_eps, max_position_embeddings=cfg.max_position_embeddings,
        tie_word_embeddings=cfg.tie_word_embeddings, attention_bias=True, mlp_bias=True)).eval()
    hf.load_state_dict(dict(iter_gguf_tensors(open_gguf(path), cfg)), strict=True)
    with torch.no_grad():
        expected = hf(torch.tensor([IDS])).logits[0]
    torch.testing.assert_close(ours.logits(IDS), expected, atol=1e-4, rtol=1e-4)
    quantized = write(tmp_path / "q.gguf", "llama", {"*": "Q8_0"}, biases=True)
    blocks, engine = logits_of(quantized, "gguf")
    assert rel_err(blocks, logits_of(quantized, "none")[0]) < 0.05


def test_the_files_bytes_are_kept(tmp_path):
    path = write(tmp_path / "m.gguf", "llama", {"*": "Q5_K"})
    reader = gguf.GGUFReader(path)
    stored = {t.name: np.array(t.data) for t in reader.tensors}
    engine = load_model(path, quant="gguf", dtype=torch.float32)
    down = engine.model.model.layers[1].mlp.down_proj.weight_q
    np.testing.assert_array_equal(down.blocks.numpy(), stored["blk.1.ffn_down.weight"])
    # q's rows came back from llama.cpp's RoPE permutation whole: the same bytes, reordered.
    qkv = engine.model.model.layers[0].self_attn.qkv_proj.weight_q
    q_rows = DIMS["heads"] * DIMS["head_dim"]
    assert sorted(map(bytes, qkv.blocks[:q_rows].numpy())) == sorted(map(bytes, stored["blk.0.attn_q.weight"]))


def test_a_k_quant_mix_and_a_tied_q8_0_head(tmp_path):
    """As Q4_K_M stores a model: Q4_K mostly, Q6_K for v and down; the LM head is the
    Q8_0 embedding (tied)."""
    types = {"*": "Q4_K", "attn_v": "Q6_K", "ffn_down": "Q6_K", "token_embd": "Q8_0"}
    path = write(tmp_path / "m.gguf", "llama", types, tied=True)
    floats, _ = logits_of(path, "none")
    blocks, engine = logits_of(path, "gguf")
    attn = engine.model.model.layers[0].self_attn
    assert attn.qkv_proj is None and attn.v_proj.weight_q.type.name == "Q6_K"  # q/k/v mixed: not joined
    assert engine.model.lm_head.weight_q.type.name == "Q8_0"
    assert rel_err(blocks, floats) < 0.05


def test_float_layers_stay_float(tmp_path):
    path = write(tmp_path / "m.gguf", "llama", {"*": "Q4_0", "attn_output": "F32"})
    engine = load_model(path, quant="gguf", dtype=torch.float32)
    assert type(engine.model.model.layers[0].self_attn.o_proj) is torch.nn.Linear


def test_auto_picks_the_blocks_where_the_kernel_runs(tmp_path, monkeypatch):
    cpu = torch.device("cpu")
    if G.cpu_kernel_available():
        for bf16, want in ((False, torch.float32), (True, torch.bfloat16)):  # bf16 prefill GEMMs where the CPU has them
            monkeypatch.setattr(loader, "cpu_has_bf16", lambda bf16=bf16: bf16)
            quant, dtype, reason = resolve_precision("auto", None, cpu, True, 1.0)
            assert (quant, dtype) == ("gguf", want) and "computed as stored" in reason
    monkeypatch.setattr(loader, "cpu_kernel_available", lambda: False)
    monkeypatch.setattr(loader, "cpu_has_bf16", lambda: False)
    quant, dtype, _ = resolve_precision("auto", None, cpu, True, 1.0)
    assert (quant, dtype) == ("none", torch.float32)  # no kernel, no bf16: the float path
    # Mostly float or unsupported types: not the blocks.
    monkeypatch.setattr(loader, "cpu_kernel_available", lambda: True)
    assert resolve_precision("auto", None, cpu, False, 0.2).quant == "none"
    assert resolve_precision("auto", None, torch.device("meta"), True, 1.0).quant == "none"


def test_gguf_needs_a_gguf_file_and_the_cpu(tmp_path):
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text('{"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, '
                                                 '"num_hidden_layers": 1, "num_attention_heads": 4, '
                                                 '"num_key_value_heads": 2, "vocab_size": 64}')
    with pytest.raises(ModelLoadError, match="not a GGUF file"):
        load_model(tmp_path / "hf", quant="gguf")
    with pytest.raises(InvalidRequestError, match="on the CPU or a CUDA GPU, not on meta"):
        check_quant_device("gguf", torch.device("meta"))
    check_quant_device("gguf", torch.device("cuda"))  # the Triton kernels (no GPU needed to say so)


def test_auto_picks_the_blocks_on_a_gpu_where_triton_runs(monkeypatch):
    """On CUDA as on the CPU: the blocks where most linear bytes are in types computed as
    stored, with bfloat16 activations; without triton, the float path, saying why."""
    gpu = torch.device("cuda")  # resolve_precision reads only its type
    monkeypatch.setattr(loader, "triton_import_error", lambda: None)
    quant, dtype, reason = resolve_precision("auto", None, gpu, True, 0.9)
    assert (quant, dtype) == ("gguf", torch.bfloat16) and "Triton" in reason
    assert resolve_precision("auto", None, gpu, True, 0.3)[:2] == ("none", torch.bfloat16)
    assert resolve_precision("gguf", torch.float16, gpu, True, 0.3)[:2] == ("gguf", torch.float16)
    monkeypatch.setattr(loader, "triton_import_error", lambda: "No module named 'triton'")
    quant, _, reason = resolve_precision("auto", None, gpu, True, 0.9)
    assert quant == "none" and "triton is not importable" in reason


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("kind", ["Q4_0", "Q5_1", "Q8_0", "Q4_K", "Q6_K"])
def test_blocks_on_the_gpu_compute_the_files_weights(tmp_path, kind):
    """--quant gguf on CUDA: the blocks stay on the card (Triton dequantizes them in the
    matmul) and the logits are those of the file in float32, up to bfloat16 activations."""
    path = write(tmp_path / "m.gguf", "qwen2", {"*": kind, "token_embd": "F32", "output": "Q6_K"})
    floats, _ = logits_of(path, "none")
    engine = load_model(path, device="cuda", quant="auto", dtype=None)
    assert engine.config.dtype == torch.bfloat16 and "Triton" in engine.config.precision
    layers = gguf_layers(engine)
    assert len(layers) == 4 * DIMS["layers"] + 1 and all(w.blocks.is_cuda for w in layers.values())
    blocks = engine.logits(IDS).float().cpu()
    assert rel_err(blocks, floats) < 0.05, kind


def test_a_type_nobody_reads_fails_before_any_weight(tmp_path):
    """Q8_1 is an activation format: a file storing a weight in it is refused at the plan,
    naming the tensor, its type and the types that are read."""
    data = np.zeros((DIMS["hidden"], DIMS["hidden"] // 32 * 40), dtype=np.uint8)
    bad = write(tmp_path / "bad.gguf", "llama", {"*": "Q4_0"}, raw={"blk.1.attn_q.weight": (data, gguf.GGMLQuantizationType.Q8_1)})
    with pytest.raises(UnsupportedModelError, match=r"'blk\.1\.attn_q\.weight' has type Q8_1.*reads .*Q4_K"):
        load_model(bad, quant="gguf")


def test_bf16_detection_asks_torch_not_proc_cpuinfo(monkeypatch):
    """torch's cpuinfo answers on Linux, macOS and Windows alike; the variable still overrides it."""
    monkeypatch.delenv("LOOPCODER_CPU_BF16", raising=False)
    for avx512_bf16, amx, want in ((True, False, True), (False, True, True), (False, False, False)):
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=avx512_bf16: v)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda v=amx: v)
        assert loader.cpu_has_bf16() is want
    monkeypatch.setenv("LOOPCODER_CPU_BF16", "1")
    assert loader.cpu_has_bf16() is True
    monkeypatch.setenv("LOOPCODER_CPU_BF16", "yes")
    with pytest.raises(ModelLoadError, match="use 0 or 1"):
        loader.cpu_has_bf16()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_blocks_on_the_gpu_decode_through_cuda_graphs(tmp_path, monkeypatch):
    """A Q4_K_M-like mix on CUDA: decode steps and an edit's re-prefill replay captured
    graphs (the Triton launches depend on shapes only) and give the eager steps' tokens."""
    types = {"*": "Q4_K", "attn_v": "Q6_K", "ffn_down": "Q6_K", "token_embd": "Q8_0"}
    path = write(tmp_path / "m.gguf", "llama", types, tied=True)
    results = {}
    for graphs in ("0", "1"):
        monkeypatch.setenv(GRAPHS_ENV, graphs)
        engine = load_model(path, device="cuda", quant="gguf", dtype=None)
        doc = IDS * 3
        results[graphs] = [engine.generate_for("d", ids, SamplingParams(max_new_tokens=8, ignore_eos=True)).token_ids
                           for ids in (doc, doc[:20] + [7, 8] + doc[20:])]
        if graphs == "1":
            assert engine.stats()["graph_replays"] > 0, engine.stats()
    assert results["1"] == results["0"]


def test_tensor_parallel_refuses_the_blocks():
    """The blocks are computed in one process; a sharded launch says which modes it takes."""
    with pytest.raises(ModelLoadError, match=r"in one process \(on the CPU or one GPU\).*none, int8, int4 or fp8"):
        check_launch(tiny_config(), 2, "cpu", "gguf")
