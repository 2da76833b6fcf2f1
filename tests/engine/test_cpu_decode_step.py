"""The engine's decode steps through kernels/decoder_cpu.py (every layer in one C call) on
GGUF models: the same logits as the layer-by-layer path, the same K/V in the pages, and the
models and modes it does not take left to the layer-by-layer path."""

from __future__ import annotations

import pytest
import torch

from loopcoder.engine.kv_cache import KVCache
from loopcoder.engine.loader import load_model
from loopcoder.engine.model_runner import StepInput
from loopcoder.kernels import decoder_cpu as DC

from .test_gguf_blocks import IDS, write

pytestmark = pytest.mark.skipif(DC._kernel is None, reason=f"the C step is not built: {DC.decoder_kernel_status()}")

BLOCK = 4


def decode_logits(engine, use_c: bool, steps: int = 4) -> tuple[torch.Tensor, KVCache]:
    """Prefill IDS (layer by layer: several rows), then `steps` greedy decode steps, two
    sequences side by side; every decode step's logits (steps, 2, V)."""
    model, runner = engine.model, engine.runner
    decoder = model.cpu_decoder
    kv = KVCache(model.config, num_blocks=32, block_size=BLOCK, dtype=engine.config.dtype, device="cpu")
    tables = [list(range(0, 16)), list(range(31, 15, -1))]  # one in order, one scattered backwards
    prompts = [IDS, IDS[3:] + IDS[:3]]
    model.cpu_decoder = decoder if use_c else None
    try:
        logits = runner.step([StepInput(t, 0, p) for t, p in zip(tables, prompts)], kv)
        out, lengths = [], [len(p) for p in prompts]
        for _ in range(steps):
            nxt = logits.argmax(-1).tolist()
            logits = runner.step([StepInput(t, n, [x]) for t, n, x in zip(tables, lengths, nxt)], kv)
            lengths = [n + 1 for n in lengths]
            out.append(logits)
    finally:
        model.cpu_decoder = decoder
    return torch.stack(out), kv


@pytest.mark.parametrize("arch,types,dtype,biases", [
    ("llama", {"*": "Q4_1", "output": "Q8_0"}, torch.float32, False),
    ("qwen2", {"attn_v": "Q6_K", "ffn_down": "Q6_K", "*": "Q4_K"}, torch.bfloat16, False),  # a Q4_K_M-like mix
    ("qwen3", {"*": "Q5_0"}, torch.float32, False),
    ("llama", {"*": "Q8_0"}, torch.float32, True),  # attention_bias and mlp_bias: a bias on every projection
])
def test_decode_steps_in_c_match_the_layer_by_layer_path(tmp_path, arch, types, dtype, biases):
    engine = load_model(write(tmp_path / "m.gguf", arch, types, biases=biases), quant="gguf", dtype=dtype)
    assert engine.model.cpu_decoder_status == "every layer in one C call"
    calls = []
    run = engine.model.cpu_decoder.run
    engine.model.cpu_decoder.run = lambda *a: calls.append(1) or run(*a)
    c_logits, c_kv = decode_logits(engine, use_c=True)
    assert len(calls) == 4  # every decode step, never the prefill
    py_logits, py_kv = decode_logits(engine, use_c=False)
    err = float((c_logits - py_logits).norm() / py_logits.norm())
    # The same kernels for the products; only the norms' and residuals' float rounding differs
    # (float32 residuals in C, the model's dtype layer by layer).
    assert err < (2e-3 if dtype == torch.float32 else 3e-2), err
    for i in range(engine.model.config.num_hidden_layers):
        for c, p in zip(c_kv.layer(i), py_kv.layer(i)):
            assert float((c.float() - p.float()).norm() / p.float().norm()) < (1e-3 if dtype == torch.float32 else 2e-2)


def test_kernel_mode_torch_and_float_models_run_layer_by_layer(tmp_path, monkeypatch):
    path = write(tmp_path / "m.gguf", "llama", {"*": "Q8_0"})
    floats = load_model(path, quant="none", dtype=torch.float32)
    assert floats.model.cpu_decoder is None
    blocks = load_model(path, quant="gguf", dtype=torch.float32)
    calls = []
    run = blocks.model.cpu_decoder.run
    blocks.model.cpu_decoder.run = lambda *a: calls.append(1) or run(*a)
    monkeypatch.setenv("LOOPCODER_KERNELS", "torch")
    decode_logits(blocks, use_c=True, steps=1)
    assert calls == []


def test_a_float_layer_among_the_blocks_keeps_the_layer_by_layer_path(tmp_path):
    engine = load_model(write(tmp_path / "m.gguf", "llama", {"*": "Q8_0", "ffn_down": "F32"}), quant="gguf",
                        dtype=torch.float32)
    assert engine.model.cpu_decoder is None
    assert engine.model.cpu_decoder_status == "off: down_proj is not GGUF blocks"
