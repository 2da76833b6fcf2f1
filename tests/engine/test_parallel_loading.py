"""Each tensor-parallel rank reads only its slices of the checkpoint (engine/parallel/loading.py):
the shard equals cutting the whole model (shard_model), parameter for parameter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from loopcoder.engine.errors import ModelLoadError
from loopcoder.engine.loader import materialize, open_source, random_model
from loopcoder.engine.parallel import TensorParallelGroup, shard_model
from loopcoder.engine.parallel.loading import load_shard

from .helpers import tiny_config


def save_tiny(directory: Path, model_type: str, **overrides) -> Path:
    """A random tiny model as a Hugging Face directory (config.json, model.safetensors)."""
    cfg = tiny_config(model_type, **overrides)
    model = random_model(cfg)
    model.init_random(0, std=0.2)
    weights = {hf_name(model_type, name): p.detach().contiguous() for name, p in model.named_parameters()}  # tied: once
    directory.mkdir(parents=True, exist_ok=True)
    save_file(weights, directory / "model.safetensors")
    raw = dict(model_type=model_type, vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size,
               intermediate_size=cfg.intermediate_size, num_hidden_layers=cfg.num_hidden_layers,
               num_attention_heads=cfg.num_attention_heads, num_key_value_heads=cfg.num_key_value_heads,
               max_position_embeddings=cfg.max_position_embeddings, rope_theta=cfg.rope_theta,
               rms_norm_eps=cfg.norm_eps, norm_epsilon=cfg.norm_eps, tie_word_embeddings=cfg.tie_word_embeddings)
    if cfg.is_loop:
        raw.update(loop_num=cfg.loop_num, loop_window_size=cfg.loop_window_size)
    (directory / "config.json").write_text(json.dumps(raw))
    return directory


def hf_name(model_type: str, name: str) -> str:
    """StarCoder2 checkpoints name the MLP's projections c_fc and c_proj."""
    if model_type != "starcoder2":
        return name
    return name.replace(".mlp.up_proj.", ".mlp.c_fc.").replace(".mlp.down_proj.", ".mlp.c_proj.")


def assert_same_shard(path: Path | None, tp: TensorParallelGroup) -> None:
    source = open_source(path, with_tokenizer=False)
    whole = shard_model(materialize(source.config, torch.float32, "cpu", source.weights()), tp)
    alone = load_shard(path, tp, torch.float32, "cpu")
    want, got = dict(whole.named_parameters(remove_duplicate=False)), dict(alone.named_parameters(remove_duplicate=False))
    assert got.keys() == want.keys()
    for name in want:
        assert torch.equal(got[name], want[name]), name
    assert alone.config == whole.config and alone.full_config == whole.full_config
    if source.config.tie_word_embeddings:
        assert alone.lm_head.weight is alone.model.embed_tokens.weight


@pytest.mark.parametrize("model_type,overrides", [("llama", {}), ("qwen2", {}), ("llama", {"tie_word_embeddings": True}),
                                                  ("llama", {"vocab_size": 95}),  # the last rank's rows fewer
                                                  ("starcoder2", {})])
@pytest.mark.parametrize("rank", [0, 1])
def test_sliced_safetensors_equal_shard_of_whole_model(tmp_path, model_type, overrides, rank):
    path = save_tiny(tmp_path / "model", model_type, **overrides)
    assert_same_shard(path, TensorParallelGroup(rank=rank, world_size=2))


@pytest.mark.parametrize("rank", [0, 1])
def test_golden_loop_model_shard_equals_shard_of_whole_model(golden_dir, rank):
    assert_same_shard(golden_dir, TensorParallelGroup(rank=rank, world_size=2))


@pytest.mark.slow
def test_gguf_shard_equals_shard_of_whole_model():
    """The embedded default GGUF (9 heads, 3 KV heads), rank 1 of 3: each tensor dequantized, then cut."""
    assert_same_shard(None, TensorParallelGroup(rank=1, world_size=3))


def test_world_size_four_on_the_golden_model(golden_dir):
    with pytest.raises(ModelLoadError, match="num_key_value_heads=2 is not divisible by 4"):
        load_shard(golden_dir, TensorParallelGroup(rank=0, world_size=4), torch.float32, "cpu")


def test_wrong_full_shape_is_refused_before_slicing(tmp_path):
    """A q_proj with twice the rows would slice to the right shape; its full shape is checked first."""
    path = save_tiny(tmp_path / "model", "llama")
    from safetensors.torch import load_file

    weights = load_file(path / "model.safetensors")
    name = "model.layers.1.self_attn.q_proj.weight"
    weights[name] = torch.cat([weights[name], weights[name]])
    save_file(weights, path / "model.safetensors")
    with pytest.raises(ModelLoadError, match=f"{name}.*shape \\(64, 32\\), expected \\(32, 32\\)"):
        load_shard(path, TensorParallelGroup(rank=0, world_size=2), torch.float32, "cpu")


def test_engine_stats_report_the_world_size():
    from loopcoder.engine.engine import Engine, EngineConfig
    from loopcoder.engine.parallel import TensorParallelRunner

    model = random_model(tiny_config("llama"))
    assert Engine(model, None, EngineConfig(kv_budget_bytes=1 << 20)).stats()["tensor_parallel"] == 1
    sharded = shard_model(random_model(tiny_config("llama")), TensorParallelGroup.single())
    engine = Engine(sharded, None, EngineConfig(kv_budget_bytes=1 << 20), runner_class=TensorParallelRunner)
    assert isinstance(engine.runner, TensorParallelRunner) and engine.stats()["tensor_parallel"] == 1
    engine.runner.stop()
    with pytest.raises(Exception, match="have stopped"):
        engine.generate([1, 2, 3], max_new_tokens=2)


@pytest.mark.parametrize("quant", ["int8", "int4", "fp8"])
@pytest.mark.parametrize("rank", [0, 1])
def test_quantized_shard_equals_quantizing_the_cut_model(tmp_path, quant, rank):
    """Quantized while its slices load: the same layers, codes and scales as cutting the
    whole model, then quantizing the shard (row-parallel layers keep their all-reduce)."""
    from loopcoder.engine.quantization import QuantLinear, quantize_model

    path = save_tiny(tmp_path / "model", "llama", hidden_size=64, intermediate_size=128)
    tp = TensorParallelGroup(rank=rank, world_size=2)
    source = open_source(path, with_tokenizer=False)
    want = quantize_model(shard_model(materialize(source.config, torch.float32, "cpu", source.weights()), tp), quant,
                          torch.float32)
    got = load_shard(path, tp, torch.float32, "cpu", quant=quant)
    want_layers = {n: m for n, m in want.named_modules() if isinstance(m, QuantLinear)}
    got_layers = {n: m for n, m in got.named_modules() if isinstance(m, QuantLinear)}
    # The vocab-parallel LM head stays in the model's dtype, whatever the mode.
    assert got_layers.keys() == want_layers.keys() and len(got_layers) == 2 * 7
    for name, layer in got_layers.items():
        assert (layer.tp is not None) == name.endswith(("o_proj", "down_proj")), name
        for field in ("q", "scale", "nibbles", "scale_zero"):
            if hasattr(layer.weight_q, field):
                assert torch.equal(getattr(layer.weight_q, field).float(), getattr(want_layers[name].weight_q, field).float()), name
