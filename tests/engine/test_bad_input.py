"""Every kind of bad input gets a specific error, and the engine keeps working."""

import json

import pytest
import torch
from safetensors.torch import save_file

from loopcoder.engine import load_model
from loopcoder.engine.sampling import SamplingParams
from loopcoder.engine.errors import InvalidRequestError, KVCacheOutOfMemoryError, ModelLoadError, UnsupportedModelError

from .helpers import tiny_config, tiny_engine


def write_sharded(tmp_path, cfg_dict, state):
    names = sorted(state)
    half = len(names) // 2
    shards = {"model-00001-of-00002.safetensors": names[:half], "model-00002-of-00002.safetensors": names[half:]}
    for shard, keys in shards.items():
        save_file({k: state[k].contiguous() for k in keys}, tmp_path / shard)
    index = {"weight_map": {k: shard for shard, keys in shards.items() for k in keys}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    (tmp_path / "config.json").write_text(json.dumps(cfg_dict))


@pytest.fixture
def sharded_dir(tmp_path):
    cfg = dict(model_type="llama", vocab_size=97, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
               num_attention_heads=4, num_key_value_heads=2, architectures=["LlamaForCausalLM"],
               rms_norm_eps=1e-5, max_position_embeddings=512)
    engine = tiny_engine("llama")
    state = {k: v.clone() for k, v in engine.model.state_dict().items()}
    write_sharded(tmp_path, cfg, state)
    return tmp_path, engine


def test_sharded_checkpoint_loads(sharded_dir):
    path, engine = sharded_dir
    loaded = load_model(path)
    ids = [1, 2, 3, 4, 5]
    torch.testing.assert_close(loaded.logits(ids), engine.logits(ids))


def test_missing_shard(sharded_dir):
    path, _ = sharded_dir
    (path / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(ModelLoadError, match="missing shard.*model-00002-of-00002"):
        load_model(path)


def test_missing_tensor_is_named(sharded_dir):
    path, engine = sharded_dir
    state = {k: v for k, v in engine.model.state_dict().items() if k != "model.layers.1.mlp.up_proj.weight"}
    for f in path.glob("*.safetensors"):
        f.unlink()
    save_file(state, path / "model.safetensors")
    (path / "model.safetensors.index.json").unlink()
    with pytest.raises(ModelLoadError, match=r"lacks 1 tensor.*model\.layers\.1\.mlp\.up_proj\.weight"):
        load_model(path)


def test_wrong_tensor_shape_is_named(sharded_dir):
    path, engine = sharded_dir
    state = dict(engine.model.state_dict())
    state["model.layers.0.self_attn.k_proj.weight"] = torch.zeros(5, 32)
    for f in path.glob("*.safetensors"):
        f.unlink()
    (path / "model.safetensors.index.json").unlink()
    save_file(state, path / "model.safetensors")
    with pytest.raises(ModelLoadError, match=r"k_proj\.weight.*shape \(5, 32\), expected \(16, 32\)"):
        load_model(path)


def test_unexpected_tensor_is_named(sharded_dir):
    path, engine = sharded_dir
    state = dict(engine.model.state_dict())
    state["model.layers.0.self_attn.rogue.weight"] = torch.zeros(2)
    for f in path.glob("*.safetensors"):
        f.unlink()
    (path / "model.safetensors.index.json").unlink()
    save_file(state, path / "model.safetensors")
    with pytest.raises(ModelLoadError, match="unexpected tensor.*rogue"):
        load_model(path)


def test_unknown_architecture(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "mamba", "architectures": ["MambaForCausalLM"]}))
    with pytest.raises(UnsupportedModelError, match="mamba"):
        load_model(tmp_path)


def test_malformed_config(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="not valid JSON"):
        load_model(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "vocab_size": 10}))
    with pytest.raises(ModelLoadError, match="lacks required field"):
        load_model(tmp_path)


STARCODER2 = dict(model_type="starcoder2", architectures=["Starcoder2ForCausalLM"], vocab_size=97, hidden_size=32,
                  intermediate_size=48, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                  norm_epsilon=1e-5, hidden_act="gelu_pytorch_tanh", use_bias=True)


@pytest.mark.parametrize("field", ["hidden_size", "intermediate_size", "num_attention_heads", "vocab_size",
                                   # transformers would take 2 (StarCoder2-7B's): no guess for a GQA model
                                   "num_key_value_heads"])
def test_starcoder2_config_lacking_a_required_field(tmp_path, field):
    (tmp_path / "config.json").write_text(json.dumps({k: v for k, v in STARCODER2.items() if k != field}))
    with pytest.raises(ModelLoadError, match=f"lacks required field '{field}'"):
        load_model(tmp_path)


@pytest.mark.parametrize("changes,error,match", [
    ({"hidden_act": "gelu"}, UnsupportedModelError, "hidden_act='gelu'.*gelu_pytorch_tanh"),
    ({"sliding_window": 0}, ModelLoadError, "sliding_window=0"),
    ({"norm_epsilon": "tiny"}, ModelLoadError, "malformed"),
])
def test_starcoder2_bad_fields(tmp_path, changes, error, match):
    (tmp_path / "config.json").write_text(json.dumps(STARCODER2 | changes))
    with pytest.raises(error, match=match):
        load_model(tmp_path)


def test_nonexistent_model_path(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(tmp_path / "nope")


def test_bad_head_layout():
    with pytest.raises(ModelLoadError, match="not a multiple"):
        tiny_config(num_key_value_heads=3)


@pytest.mark.parametrize("ids,match", [([], "empty prompt"), ([1, 97], "out of range"), ([-1], "out of range"),
                                       ([1, 2.5], "out of range"), ([True], "out of range")])
def test_bad_token_ids(ids, match):
    engine = tiny_engine("llama")
    with pytest.raises(InvalidRequestError, match=match):
        engine.logits(ids)
    with pytest.raises(InvalidRequestError, match=match):
        engine.generate(ids)
    assert engine.generate([1, 2, 3], max_new_tokens=2)  # still serves


def test_prompt_longer_than_model_positions():
    engine = tiny_engine("llama", max_position_embeddings=32)
    with pytest.raises(InvalidRequestError, match="exceeds the model's 32 positions"):
        engine.generate(list(range(1, 30)), max_new_tokens=8)


@pytest.mark.parametrize("model_type", ["llama", "iquestloopcoder"])
def test_a_document_larger_than_the_whole_kv_cache_is_refused_before_any_work(model_type):
    """No eviction can make room for it: say so at once, with the pool's size, and keep what is cached."""
    engine = tiny_engine(model_type, kv_budget_bytes=1 << 16, max_position_embeddings=4096)
    capacity = engine.pool.num_blocks * engine.cache_config.block_size
    engine.prefill("kept", [5, 6, 7, 8, 9])
    too_long = [1 + i % 90 for i in range(capacity - 2)]
    with pytest.raises(KVCacheOutOfMemoryError, match=rf"need {engine.pool.num_blocks + 1} KV blocks.* holds "
                                                      rf"{engine.pool.num_blocks} blocks \({capacity} tokens\).*--kv-budget"):
        engine.generate_for("big", too_long, SamplingParams(max_new_tokens=4))
    assert "big" not in engine.sessions and engine.sessions["kept"].num_tokens == 5
    assert engine.generate_for("fits", too_long[: capacity // 2], SamplingParams(max_new_tokens=4)).text is not None


def test_prefill_longer_than_model_positions():
    engine = tiny_engine("llama", max_position_embeddings=32)
    with pytest.raises(InvalidRequestError, match="plus max_new_tokens=0 exceeds the model's 32 positions"):
        engine.prefill("d", list(range(1, 40)))
    assert engine.sessions == {} or engine.sessions["d"].num_tokens == 0
