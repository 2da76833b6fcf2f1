"""Tensor parallelism on CPU: world size 2 over gloo equals the single-process model.

Each test spawns its ranks (torch.multiprocessing, a fresh TCP port each time). Rank 0
runs a multi-step warm session through TensorParallelRunner and saves its logits; the
test compares them with the same session on the unsharded model in this process.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from loopcoder.engine.engine import Engine, EngineConfig
from loopcoder.engine.errors import ModelLoadError
from loopcoder.engine.kv_cache import CacheConfig, KVCache
from loopcoder.engine.loader import materialize, random_model
from loopcoder.engine.model_runner import ModelRunner, StepInput
from loopcoder.engine.quantization import quantize_model
from loopcoder.engine.parallel import (
    TensorParallelGroup,
    TensorParallelRunner,
    check_tensor_parallel,
    follow,
    free_tcp_port,
    init_tensor_parallel,
    shard_model,
)

from .helpers import tiny_config

ROOT = Path(__file__).resolve().parents[2]

ATOL = 1e-5
BLOCK_SIZE = 4
NUM_BLOCKS = 20

# name -> (model_type, config overrides); every one has 4 heads and 2 KV heads (GQA).
TINY = {
    "llama": ("llama", {}),
    "qwen2": ("qwen2", {}),  # q/k/v biases
    "llama-tied": ("llama", {"tie_word_embeddings": True}),
    "loop": ("iquestloopcoder", {}),
    # LayerNorm, biases on every projection (row-parallel ones added once, after the all-reduce),
    # the GELU MLP without a gate, a sliding window.
    "starcoder2": ("starcoder2", {"sliding_window": 6}),
}


def build_model(spec: tuple[str, str]):
    """("tiny", name) or ("golden", directory) -> the same float32 model in every process."""
    kind, name = spec
    if kind == "golden":
        from loopcoder.engine.weights.safetensors_dir import iter_safetensors, safetensors_files

        from loopcoder.engine.config import ModelConfig

        directory = Path(name)
        cfg = ModelConfig.from_json_file(directory / "config.json")
        return materialize(cfg, torch.float32, "cpu", iter_safetensors(safetensors_files(directory)))
    model_type, overrides = TINY[name]
    model = random_model(tiny_config(model_type, **overrides), seed=0)
    model.init_random(0, std=0.2)  # large enough that logits depend on the input
    return model


def session_plan(vocab_size: int) -> list[tuple[list[StepInput], bool]]:
    """Two documents on scattered blocks: chunked prefill (one step with every row's
    logits), decode steps, then an edit that rewinds document A to position 15."""
    gen = torch.Generator().manual_seed(7)

    def tokens(n: int) -> list[int]:
        return torch.randint(0, vocab_size, (n,), generator=gen).tolist()

    table_a, table_b = list(range(10)), [19, 17, 15, 13, 11, 12, 14, 16]
    a, b = tokens(23), tokens(10)
    steps = [
        ([StepInput(table_a, 0, a[0:7]), StepInput(table_b, 0, b[0:5])], False),
        ([StepInput(table_a, 7, a[7:14]), StepInput(table_b, 5, b[5:10])], False),
        ([StepInput(table_a, 14, a[14:21])], True),
        ([StepInput(table_a, 21, a[21:23])], False),
    ]
    for i in range(4):
        steps.append(([StepInput(table_a, 23 + i, tokens(1)), StepInput(table_b, 10 + i, tokens(1))], False))
    steps.append(([StepInput(table_a, 15, tokens(6))], False))  # warm resume after an edit
    for i in range(3):
        steps.append(([StepInput(table_a, 21 + i, tokens(1))], False))
    return steps


def run_session(runner: ModelRunner, kv: KVCache, vocab_size: int) -> list[torch.Tensor]:
    return [runner.step(batch, kv, all_logits).cpu() for batch, all_logits in session_plan(vocab_size)]


def reference_session(spec, device: str = "cpu") -> list[torch.Tensor]:
    model = build_model(spec).to(device)
    kv = KVCache(model.config, NUM_BLOCKS, BLOCK_SIZE, torch.float32, device)
    return run_session(ModelRunner(model, device), kv, model.config.vocab_size)


def _rank_main(rank: int, world_size: int, port: int, spec, out: str, extra: dict) -> None:
    torch.set_num_threads(1)  # two ranks on a 2-core machine
    backend = "nccl" if extra.get("device") == "cuda" else "gloo"
    tp = init_tensor_parallel(rank, world_size, f"tcp://127.0.0.1:{port}", backend=backend)
    try:
        _run_rank(tp, spec, out, extra)
    finally:
        tp.close()
    # Skip interpreter teardown: now and then a gloo thread's destructor aborts it
    # ("terminate called without an active exception") after all the work is done.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _run_rank(tp: TensorParallelGroup, spec, out: str, extra: dict) -> None:
    rank = tp.rank
    device = f"cuda:{rank}" if extra.get("device") == "cuda" else "cpu"
    model = shard_model(build_model(spec).to(device), tp)
    if "quant" in extra:
        quantize_model(model, extra["quant"], torch.float32)
    kv = KVCache(model.config, NUM_BLOCKS, BLOCK_SIZE, torch.float32, device)
    if rank > 0:
        follow(model, kv, device)
        if "engine" in extra:  # then the engine's own cache (sized like rank 0's), on a second follow()
            engine = extra["engine"]
            cache = CacheConfig.from_budget(model.config, engine.kv_budget_bytes, engine.block_size, engine.dtype)
            follow(model, KVCache(model.config, cache.num_blocks, cache.block_size, cache.dtype, "cpu"), "cpu")
        return
    runner = TensorParallelRunner(model, device)
    result = {"session": run_session(runner, kv, model.config.vocab_size), "local_kv_heads": kv.k.shape[3]}
    runner.stop()
    if "engine" in extra:
        engine = Engine(model, None, extra["engine"])
        engine.runner = TensorParallelRunner(model, "cpu")
        result["generated"] = engine.generate(extra["prompt"], max_new_tokens=16)
        result["full_logits"] = engine.logits(extra["full_input"])
        engine.runner.stop()
    torch.save(result, out)


def spawn_ranks(world_size: int, spec, tmp_path: Path, **extra) -> dict:
    out = tmp_path / "rank0.pt"
    # The ranks unpickle _rank_main by its module's name (tests.engine.test_tensor_parallel), so they
    # start with the repository root on sys.path, which the test process keeps off its own (conftest).
    sys.path.insert(0, str(ROOT))
    try:
        mp.spawn(_rank_main, args=(world_size, free_tcp_port(), spec, str(out), extra), nprocs=world_size, join=True)
    finally:
        sys.path.remove(str(ROOT))
    return torch.load(out)


def assert_same_session(got: list[torch.Tensor], want: list[torch.Tensor], atol: float = ATOL) -> None:
    assert len(got) == len(want)
    for step, (g, w) in enumerate(zip(got, want)):
        torch.testing.assert_close(g, w, atol=atol, rtol=0, msg=lambda m: f"step {step}: {m}")


@pytest.mark.parametrize("name", ["llama", "qwen2", "llama-tied", "loop", "starcoder2"])
def test_two_ranks_equal_single_process(name, tmp_path):
    spec = ("tiny", name)
    result = spawn_ranks(2, spec, tmp_path)
    assert result["local_kv_heads"] == 1  # 2 KV heads over 2 ranks
    assert_same_session(result["session"], reference_session(spec))


@pytest.mark.parametrize("name,quant", [("loop", "int8"), ("loop", "fp8"), ("starcoder2", "int8")])
def test_two_quantized_ranks_stay_close_to_one_quantized_process(name, quant, tmp_path):
    """Quantized shards: column-parallel rows quantize as in one process; a row-parallel
    layer's per-row scales are its shard's, so the logits differ by quantization noise only
    (and its bias, starcoder2's, is added once)."""
    spec = ("tiny", name)
    got = spawn_ranks(2, spec, tmp_path, quant=quant)["session"]
    model = build_model(spec)
    quantize_model(model, quant, torch.float32)
    kv = KVCache(model.config, NUM_BLOCKS, BLOCK_SIZE, torch.float32, "cpu")
    want = run_session(ModelRunner(model, "cpu"), kv, model.config.vocab_size)
    full = reference_session(spec)
    for g, w, f in zip(got, want, full):
        noise = (w - f).abs().max()  # one process, quantized against float (large on this tiny model in fp8)
        assert noise > 0  # the quantized layers are used
        assert (g - w).abs().max() < 2 * noise  # two quantizations, each within the noise
    assert not torch.equal(got[0], full[0])


def test_two_ranks_golden_loop_model(golden_dir, tmp_path):
    from safetensors.torch import load_file

    from loopcoder.engine.config import ModelConfig

    from .helpers import golden_engine

    cfg = ModelConfig.from_json_file(golden_dir / "config.json")
    check_tensor_parallel(cfg, 2)  # 4 heads, 2 KV heads, MLP 128: splits over 2 ranks
    cases = load_file(golden_dir / "cases.safetensors")
    engine_config = EngineConfig(kv_budget_bytes=1 << 22, block_size=4, prefill_chunk=5)
    spec = ("golden", str(golden_dir))
    result = spawn_ranks(2, spec, tmp_path, engine=engine_config, prompt=cases["greedy_prompt"].tolist(),
                         full_input=cases["input_2"].tolist())
    assert_same_session(result["session"], reference_session(spec))
    # The single-process engine on the same session gives the same logits as golden_engine's model:
    reference = golden_engine(golden_dir, kv_budget_bytes=1 << 22, block_size=4, prefill_chunk=5)
    assert reference.generate(cases["greedy_prompt"].tolist(), max_new_tokens=16) == result["generated"]
    # Through the engine (scheduler, sessions, chunked prefill, decode) on rank 0:
    assert result["generated"] == cases["greedy_full"].tolist()
    torch.testing.assert_close(result["full_logits"], cases["logits_2"], atol=ATOL, rtol=0)


def test_world_size_one_equals_plain_model():
    """No process group at all: the sharded code path on one device (what one GPU checks)."""
    spec = ("tiny", "loop")
    model = shard_model(build_model(spec), TensorParallelGroup.single())
    kv = KVCache(model.config, NUM_BLOCKS, BLOCK_SIZE, torch.float32, "cpu")
    runner = TensorParallelRunner(model, "cpu")
    assert_same_session(run_session(runner, kv, model.config.vocab_size), reference_session(spec))


@pytest.mark.parametrize("world_size,field", [(3, "num_attention_heads"), (4, "num_key_value_heads")])
def test_bad_world_size_is_a_clear_error(world_size, field):
    model = build_model(("tiny", "llama"))  # 4 heads, 2 KV heads
    with pytest.raises(ModelLoadError, match=f"{field}=.* not divisible by {world_size}"):
        shard_model(model, TensorParallelGroup(rank=0, world_size=world_size))
    assert model.model.layers[0].self_attn.q_proj.weight.shape[0] == 32  # untouched


def test_only_rank_zero_drives_and_only_followers_follow():
    model = shard_model(build_model(("tiny", "llama")), TensorParallelGroup.single())
    with pytest.raises(ValueError, match="rank 0"):
        follow(model, KVCache(model.config, 1, 4, torch.float32, "cpu"), "cpu")
    with pytest.raises(ValueError, match="already sharded"):
        shard_model(model, TensorParallelGroup.single())


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA devices (the device tool's x2 kinds)")
@pytest.mark.parametrize("name", ["llama", "qwen2", "loop", "starcoder2"])
def test_two_gpus_over_nccl_equal_one_gpu(name, tmp_path):
    spec = ("tiny", name)
    result = spawn_ranks(2, spec, tmp_path, device="cuda")
    assert result["local_kv_heads"] == 1
    assert_same_session(result["session"], reference_session(spec, "cuda:0"), atol=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_world_size_one_on_a_gpu_equals_plain_model():
    spec = ("tiny", "loop")
    model = shard_model(build_model(spec).to("cuda"), TensorParallelGroup.single())
    kv = KVCache(model.config, NUM_BLOCKS, BLOCK_SIZE, torch.float32, "cuda")
    runner = TensorParallelRunner(model, "cuda")
    assert_same_session(run_session(runner, kv, model.config.vocab_size), reference_session(spec, "cuda"), atol=1e-4)


@pytest.mark.parametrize("name", ["llama", "llama-tied", "loop"])
@pytest.mark.parametrize("rank", [0, 1])
def test_random_shards_have_the_shapes_of_a_cut_model(name, rank):
    """Benchmarks build each rank's shard alone (never the whole model): same parameters,
    shapes and local config as cutting a whole model."""
    from loopcoder.engine.parallel import random_sharded_model

    tp = TensorParallelGroup(rank=rank, world_size=2)
    cut = shard_model(build_model(("tiny", name)), tp)
    alone = random_sharded_model(cut.full_config, tp, torch.bfloat16, "cpu")
    assert {n: p.shape for n, p in alone.named_parameters()} == {n: p.shape for n, p in cut.named_parameters()}
    assert alone.config == cut.config and all(p.dtype == torch.bfloat16 for p in alone.parameters())
    assert all(torch.isfinite(p).all() for p in alone.parameters())
    if cut.full_config.tie_word_embeddings:
        assert alone.lm_head.weight is alone.model.embed_tokens.weight
