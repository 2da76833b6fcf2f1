"""join_projections (engine/models/layers.py): q/k/v and gate/up as one matmul each give
the logits of the separate projections, for dense, Loop, biased (qwen2, starcoder2), FP8 and
tensor-parallel shards; int8/int4 layers stay separate. CUDA runners join on their own."""

import pytest
import torch

from loopcoder.engine.models.layers import join_projections
from loopcoder.engine.quantization import quantize_model

from .helpers import tiny_engine


def logits(engine, ids):
    return engine.logits(ids)


@pytest.mark.parametrize("model_type", ["llama", "iquestloopcoder", "qwen2", "starcoder2"])
def test_joined_projections_give_the_same_logits(model_type):
    engine = tiny_engine(model_type)
    ids = [3, 14, 15, 92, 65, 35, 89, 79, 32, 38, 46, 26]
    before = logits(engine, ids)
    layers = engine.model.config.num_hidden_layers
    per_layer = 1 if model_type == "starcoder2" else 2  # q/k/v (with biases); StarCoder2's MLP has one up projection
    assert join_projections(engine.model) == per_layer * layers
    assert join_projections(engine.model) == 0  # idempotent
    attn = engine.model.model.layers[0].self_attn
    assert attn.qkv_proj is not None and not hasattr(attn, "q_proj")
    torch.testing.assert_close(logits(engine, ids), before, rtol=1e-4, atol=1e-4)
    # The warm-document path runs on the joined layers too.
    engine.prefill("doc", ids[:7])
    torch.testing.assert_close(engine.sync("doc", ids), before[-1], rtol=1e-4, atol=1e-4)


def test_fp8_layers_join_and_int8_layers_do_not():
    engine = tiny_engine("llama", hidden_size=32, intermediate_size=64)
    quantize_model(engine.model, "fp8", torch.float32)
    ids = [5, 6, 7, 8, 9, 10]
    before = logits(engine, ids)
    assert join_projections(engine.model) == 4
    torch.testing.assert_close(logits(engine, ids), before, rtol=1e-5, atol=1e-5)

    other = tiny_engine("llama")
    quantize_model(other.model, "int8", torch.float32)
    assert join_projections(other.model) == 0
