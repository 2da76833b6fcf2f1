"""Quantized models stay close to their float selves, and the quantized layers are really used."""

import pytest
import torch

from loopcoder.engine.errors import InvalidRequestError
from loopcoder.engine.quantization import QuantLinear, quantize_model, weight_bytes

from .helpers import tiny_engine


@pytest.mark.parametrize("model_type", ["llama", "iquestloopcoder"])
@pytest.mark.parametrize("mode,tol", [("int8", 0.05), ("int4", 0.5)])
def test_quantized_logits_close_to_float(model_type, mode, tol):
    engine = tiny_engine(model_type, hidden_size=64, intermediate_size=96, num_attention_heads=4, num_key_value_heads=2,
                         std=0.05)
    ids = list(range(3, 40))
    before_bytes = weight_bytes(engine.model)
    reference = engine.logits(ids)
    quantize_model(engine.model, mode, torch.float32)
    assert sum(isinstance(m, QuantLinear) for m in engine.model.modules()) == 2 * 7 + 1
    assert weight_bytes(engine.model) < before_bytes
    quantized = engine.logits(ids)
    assert not torch.equal(quantized, reference)
    assert (quantized - reference).abs().max() < tol * reference.abs().max()
    # The warm path runs on the quantized layers too.
    torch.testing.assert_close(engine.sync("d", ids), quantized[-1], atol=1e-4, rtol=0)


def test_unknown_quantization_mode():
    engine = tiny_engine("llama")
    with pytest.raises(InvalidRequestError, match="quantization 'int3'"):
        quantize_model(engine.model, "int3", torch.float32)
