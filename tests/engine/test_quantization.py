"""Quantized models stay close to their float selves, and the quantized layers are really used."""

import pytest
import torch

from loopcoder.engine.errors import InvalidRequestError
from loopcoder.engine.quantization import QuantLinear, quantize_model, weight_bytes

from .helpers import tiny_engine


@pytest.mark.parametrize("model_type", ["llama", "iquestloopcoder", "starcoder2"])
@pytest.mark.parametrize("mode,tol", [("int8", 0.05), ("int4", 0.5)])
def test_quantized_logits_close_to_float(model_type, mode, tol):
    engine = tiny_engine(model_type, hidden_size=64, intermediate_size=96, num_attention_heads=4, num_key_value_heads=2,
                         std=0.05)
    ids = list(range(3, 40))
    before_bytes = weight_bytes(engine.model)
    reference = engine.logits(ids)
    quantize_model(engine.model, mode, torch.float32)
    per_layer = 6 if model_type == "starcoder2" else 7  # StarCoder2's MLP has no gate
    assert sum(isinstance(m, QuantLinear) for m in engine.model.modules()) == 2 * per_layer + 1
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


@pytest.mark.parametrize("mode", ["int8", "int4", "fp8"])
@pytest.mark.parametrize("model_type,tied", [("llama", False), ("llama", True), ("starcoder2", True)])
def test_quantized_while_loading_equals_quantized_after(mode, model_type, tied):
    """materialize(quant=...) quantizes each linear as its tensor arrives (the full-precision
    model never exists): the same layers and logits as quantizing the loaded model, the tied
    LM head included, and StarCoder2's biases (a bias may arrive after its weight)."""
    from loopcoder.engine.engine import Engine, EngineConfig
    from loopcoder.engine.loader import materialize

    from .helpers import tiny_config

    cfg = tiny_config(model_type, hidden_size=64, intermediate_size=96, tie_word_embeddings=tied)
    source = materialize(cfg, torch.float32, "cpu", None, seed=3)
    source.init_random(3, 0.05)
    state = {name: p.detach().clone() for name, p in source.named_parameters()}
    after = quantize_model(materialize(cfg, torch.float32, "cpu", state.items()), mode, torch.float32)
    during = materialize(cfg, torch.float32, "cpu", state.items(), quant=mode)
    kinds = lambda m: [type(x).__name__ for x in m.modules()]  # noqa: E731
    assert kinds(during) == kinds(after)
    assert weight_bytes(during) == weight_bytes(after)
    ids = list(range(3, 30))
    logits = [Engine(m, None, EngineConfig()).logits(ids) for m in (after, during)]
    torch.testing.assert_close(logits[1], logits[0], rtol=0, atol=0)


def test_quantized_while_loading_names_what_is_missing_or_misshapen():
    from loopcoder.engine.errors import ModelLoadError
    from loopcoder.engine.loader import materialize

    from .helpers import tiny_config

    cfg = tiny_config("llama")
    state = {name: p.detach().clone() for name, p in materialize(cfg, torch.float32, "cpu", None).named_parameters()}
    partial = {k: v for k, v in state.items() if k != "model.layers.1.mlp.down_proj.weight"}
    with pytest.raises(ModelLoadError, match="lacks 1 tensor.*layers.1.mlp.down_proj.weight"):
        materialize(cfg, torch.float32, "cpu", partial.items(), quant="int8")
    state["model.layers.0.self_attn.q_proj.weight"] = torch.zeros(3, 3)
    with pytest.raises(ModelLoadError, match=r"q_proj.weight.*shape \(3, 3\)"):
        materialize(cfg, torch.float32, "cpu", state.items(), quant="int8")


def test_random_model_quantized_as_drawn():
    from loopcoder.engine.loader import random_model

    from .helpers import tiny_config

    model = random_model(tiny_config("iquestloopcoder", hidden_size=64, intermediate_size=96), quant="fp8")
    assert sum(isinstance(m, QuantLinear) for m in model.modules()) == 2 * 7
    assert type(model.lm_head) is torch.nn.Linear


@pytest.mark.parametrize(
    "flag,low_bit,want,why",
    [
        ("0", True, ("none", torch.float32), "this CPU has no bfloat16 instructions"),
        ("1", True, ("int4", torch.bfloat16), "int4: 4-5 bit weights on a CPU with bfloat16 instructions"),
        ("1", False, ("none", torch.float32), "the weights are not 4-5 bit"),
    ],
)
def test_auto_precision_on_cpu_follows_the_hardware_and_says_why(monkeypatch, flag, low_bit, want, why):
    from loopcoder.engine.loader import resolve_precision

    monkeypatch.setenv("LOOPCODER_CPU_BF16", flag)
    quant, dtype, reason = resolve_precision("auto", None, torch.device("cpu"), low_bit)
    assert (quant, dtype) == want
    assert why in reason and str(dtype).removeprefix("torch.") in reason


def test_precision_asked_for_is_kept_and_said():
    from loopcoder.engine.loader import resolve_precision

    assert resolve_precision("int8", torch.float32, torch.device("cpu"), True) == (
        "int8", torch.float32, "int8 as asked; float32 as asked")


def test_a_bad_cpu_bf16_override_is_refused(monkeypatch):
    from loopcoder.engine.errors import ModelLoadError
    from loopcoder.engine.loader import resolve_precision

    monkeypatch.setenv("LOOPCODER_CPU_BF16", "yes")
    with pytest.raises(ModelLoadError, match="LOOPCODER_CPU_BF16='yes': use 0 or 1"):
        resolve_precision("auto", None, torch.device("cpu"), True)
