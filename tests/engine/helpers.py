"""Small models and engines for unit tests (random weights, no tokenizer)."""

from __future__ import annotations

import torch

from loopcoder.engine.config import ModelConfig
from loopcoder.engine.engine import Engine, EngineConfig
from loopcoder.engine.loader import materialize, random_model


def tiny_config(model_type: str = "llama", **overrides) -> ModelConfig:
    raw = dict(
        model_type=model_type,
        vocab_size=97,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        rope_theta=10000.0,
        rms_norm_eps=1e-5,
    )
    if model_type == "iquestloopcoder":
        raw.update(loop_num=2, loop_window_size=5)
    raw.update(overrides)
    return ModelConfig.from_dict(raw)


def tiny_engine(model_type: str = "llama", *, block_size: int = 4, prefill_chunk: int = 7,
                kv_budget_bytes: int = 1 << 22, seed: int = 0, std: float = 0.2, step_tokens: int = 512,
                **overrides) -> Engine:
    model = random_model(tiny_config(model_type, **overrides), seed=seed)
    if std != 0.02:
        model.init_random(seed, std)  # larger weights: logits that actually depend on the input
    return Engine(model, None, EngineConfig(kv_budget_bytes=kv_budget_bytes, block_size=block_size,
                                            prefill_chunk=prefill_chunk, step_tokens=step_tokens))


def golden_engine(golden_dir, **engine_kwargs) -> Engine:
    from loopcoder.engine.weights.safetensors_dir import iter_safetensors, safetensors_files

    cfg = ModelConfig.from_json_file(golden_dir / "config.json")
    model = materialize(cfg, torch.float32, "cpu", iter_safetensors(safetensors_files(golden_dir)))
    return Engine(model, None, EngineConfig(**engine_kwargs))
