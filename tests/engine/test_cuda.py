"""The engine on a CUDA device equals the CPU path (skipped without a GPU)."""

import pytest
import torch
from safetensors.torch import load_file

from loopcoder.engine import load_model

from .helpers import tiny_engine

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(autouse=True)
def exact_matmuls():
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32 = previous


def test_golden_loop_on_cuda(golden_dir):
    cases = load_file(golden_dir / "cases.safetensors")
    model = load_model(golden_dir, device="cuda")
    torch.testing.assert_close(model.logits(cases["input_2"].tolist()), cases["logits_2"], atol=1e-4, rtol=0)
    assert model.generate(cases["greedy_prompt"].tolist(), max_new_tokens=16) == cases["greedy_full"].tolist()


def test_golden_loop_bf16_on_cuda(golden_dir):
    cases = load_file(golden_dir / "cases.safetensors")
    model = load_model(golden_dir, device="cuda", dtype=torch.bfloat16)
    logits = model.logits(cases["input_2"].tolist())
    assert (logits - cases["logits_2"]).abs().max() < 0.05 * cases["logits_2"].abs().max()


@pytest.mark.parametrize("head_dim", [8, 16])  # 8: the reference attention on the GPU; 16: the Triton kernels
@pytest.mark.parametrize("model_type", ["llama", "qwen2", "iquestloopcoder", "starcoder2"])
def test_warm_sessions_on_cuda_match_cpu(model_type, head_dim):
    cpu = tiny_engine(model_type, head_dim=head_dim)
    gpu = tiny_engine(model_type, head_dim=head_dim)
    gpu.model.to("cuda")
    from loopcoder.engine.engine import Engine, EngineConfig

    gpu = Engine(gpu.model, None, EngineConfig(device="cuda", kv_budget_bytes=1 << 22, block_size=4, prefill_chunk=7))
    doc = list(range(1, 50))
    for edited in (doc, doc[:20] + [7, 8] + doc[20:], doc[:10]):
        torch.testing.assert_close(gpu.sync("d", edited), cpu.sync("d", edited), atol=1e-4, rtol=0)


@pytest.mark.parametrize("model_type", ["llama", "iquestloopcoder"])
def test_batched_decode_on_cuda_equals_one_at_a_time(model_type):
    """Several documents decoding in the same steps (the Triton decode kernels over a batch of
    sequences, mixed steps of prefill chunks and decodes on the reference) give each document
    what it gets alone."""
    from loopcoder.engine.engine import Engine, EngineConfig
    from loopcoder.engine.sampling import SamplingParams

    from .test_scheduler import prompts, submit_all, work

    model = tiny_engine(model_type, head_dim=16).model.to("cuda")  # head_dim 16: the Triton kernels take it
    engine = Engine(model, None, EngineConfig(device="cuda", kv_budget_bytes=1 << 22, block_size=4, prefill_chunk=9,
                                              step_tokens=20))
    params = SamplingParams(max_new_tokens=12, ignore_eos=True)
    alone = [engine.generate_for(f"alone{i}", p, params).token_ids for i, p in enumerate(prompts(5))]
    works = submit_all(engine, [work(f"batch{i}", p, params) for i, p in enumerate(prompts(5))])
    for w in works:
        engine.scheduler.drive(w)
    assert [w.result.token_ids for w in works] == alone
    assert engine.scheduler.max_batch_seqs == 5
