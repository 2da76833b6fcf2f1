"""Tensor-parallel decode and keystroke latency of the 40B-Loop shape on 2-8 GPUs of one host
(issue 10), random bf16 weights, each rank holding only its shard.

For each world size N (one process per GPU, NCCL, multicast off): batch-1 decode ms/token
with CUDA graphs (collectives captured) and eagerly, against the roofline of one GPU's
share: (its weight bytes x loops + LM head rows + K/V) / copy bandwidth, plus the
all-reduces a token needs (2 per layer and loop, 1 for the embedding) times the measured
latency of one (1, hidden) bf16 all-reduce; and keystroke -> first token on a warm 32K-token
document (one-token edit, 256-token suffix) against a full re-prefill.

Run:  python benchmarks/tp_decode.py --world-sizes 2,4 [--layers 80] --json-out R.json
Smoke test on CPU (gloo, tiny model): python benchmarks/tp_decode.py --cpu --world-sizes 2
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).parent))
from gpu_path import SHAPES, SUFFIX_TOKENS  # noqa: E402  the same published shapes

GiB = 1 << 30


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _median_time(fn, device: str, repeats: int, warmup: int = 3) -> float:
    times = []
    for i in range(warmup + repeats):
        _sync(device)
        t = time.perf_counter()
        fn()
        _sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def _bandwidth(device: str) -> float:
    size = 2 * GiB if device.startswith("cuda") else 64 << 20
    a = torch.empty(size, dtype=torch.uint8, device=device)
    b = torch.empty_like(a)
    return 2 * size / _median_time(lambda: b.copy_(a), device, 10)


def _captured_allreduce_s(tp, x: torch.Tensor, device: str, count: int = 100) -> float:
    stream = torch.cuda.Stream(device)
    stream.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(stream):
        for _ in range(3):
            tp.all_reduce(x)
    torch.cuda.current_stream(device).wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(count):
            tp.all_reduce(x)
    return _median_time(graph.replay, device, 10) / count


def _rank(rank: int, world_size: int, port: int, args: argparse.Namespace, out: str) -> None:
    from loopcoder.engine.config import ModelConfig
    from loopcoder.engine.engine import CacheLayout, Engine, EngineConfig
    from loopcoder.engine.parallel import TensorParallelRunner, follow, init_tensor_parallel, random_sharded_model
    from loopcoder.engine.quantization import weight_bytes
    from loopcoder.engine.sampling import SamplingParams

    device = "cpu" if args.cpu else f"cuda:{rank}"
    tp = init_tensor_parallel(rank, world_size, f"tcp://127.0.0.1:{port}", backend="gloo" if args.cpu else "nccl")
    raw = dict(SHAPES[args.model])
    if args.layers:
        raw["num_hidden_layers"] = args.layers
    full = ModelConfig.from_dict(raw)
    model = random_sharded_model(full, tp, torch.bfloat16, device, quant=args.quant)
    local = model.config
    hidden = torch.ones(1, full.hidden_size, dtype=torch.bfloat16, device=device)
    eager_allreduce_s = _median_time(lambda: tp.all_reduce(hidden), device, 50, warmup=10)
    # Inside a decode graph the all-reduces are launched by the graph: time 100 captured ones.
    allreduce_s = eager_allreduce_s if args.cpu else _captured_allreduce_s(tp, hidden, device)
    result = {"world_size": world_size, "allreduce_us": 1e6 * allreduce_s, "eager_allreduce_us": 1e6 * eager_allreduce_s}
    if rank == 0:
        result["bandwidth"] = _bandwidth(device)
        layers = model.model.layers
        layer_bytes = weight_bytes(layers)  # parameters and quantized layers
        head_bytes = model.lm_head.weight.numel() * model.lm_head.weight.element_size()
        kv_token = local.kv_bytes_per_token(2)
        collectives = full.loop_num * full.num_hidden_layers * 2 + 2  # o_proj, down_proj; embedding, logits
        result.update(layer_bytes=layer_bytes, head_bytes=head_bytes, kv_bytes_per_token=kv_token,
                      collectives=collectives,
                      roofline_ms=1000 * ((full.loop_num * layer_bytes + head_bytes + args.context * kv_token)
                                          / result["bandwidth"] + collectives * allreduce_s),
                      weights_gib_per_gpu=weight_bytes(model) / GiB)
    ids_rng = torch.Generator().manual_seed(1)

    def ids(n: int) -> list[int]:
        return torch.randint(0, full.vocab_size, (n,), generator=ids_rng).tolist()

    for graphs in (True, False):
        budget = (args.keystroke * 2 + 2 * SUFFIX_TOKENS + args.context + 256) * local.kv_bytes_per_token(2)
        config = EngineConfig(device=device, dtype=torch.bfloat16, kv_budget_bytes=budget, prefill_chunk=4096,
                              step_tokens=4096, cuda_graphs=graphs)
        if rank > 0:
            layout = CacheLayout.plan(local, config)
            kv = layout.allocate(local, device)
            follow(model, kv, device, layout.runner(model, kv, device))
            del kv
        else:
            engine = Engine(model, None, config)
            runner = TensorParallelRunner(model, device)
            runner.graphs = engine.runner.graphs  # the same captured steps, driven through the broadcast
            engine.runner = runner
            name = "graphs" if runner.graphs is not None else "eager"
            params = SamplingParams(max_new_tokens=args.tokens, ignore_eos=True)
            doc = ids(args.context)
            engine.prefill("doc", doc)
            engine.generate_for("doc", doc + [1], params)  # compiles, captures
            runs = []
            for extra in range(3):
                r = engine.generate_for("doc", doc + [2 + extra], params)
                runs.append(1000 * (r.timings.total_s - r.timings.first_token_s) / (args.tokens - 1))
            result[f"decode_ms_{name}"] = statistics.median(runs)
            engine.close("doc", keep_cached=False)
            if graphs and args.keystroke:  # the keystroke figure once, with graphs on
                one = SamplingParams(max_new_tokens=1, ignore_eos=True)
                prefix, suffix = ids(args.keystroke), ids(SUFFIX_TOKENS)
                engine.generate_for("k", prefix + suffix, one)
                warm = []
                for i in range(args.repeats):
                    prefix = prefix + [100 + i]
                    _sync(device)
                    t = time.perf_counter()
                    engine.generate_for("k", prefix + suffix, one)
                    warm.append(time.perf_counter() - t)
                engine.close("k", keep_cached=False)
                _sync(device)
                t = time.perf_counter()
                engine.generate_for("cold", ids(args.keystroke + 1 + SUFFIX_TOKENS), one)
                result["keystroke"] = {"tokens": args.keystroke, "warm_ms": 1000 * statistics.median(warm),
                                       "full_ms": 1000 * (time.perf_counter() - t)}
            result["cuda_graphs"] = engine.stats()["cuda_graphs"] if graphs else result.get("cuda_graphs")
            runner.stop()
            del engine, runner
        gc.collect()
        if not args.cpu:
            torch.cuda.empty_cache()
    if rank == 0:
        Path(out).write_text(json.dumps(result))
    tp.close()
    sys.stdout.flush()
    os._exit(0)  # skip interpreter teardown of the process group's threads


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=sorted(SHAPES), default="40b-loop")
    p.add_argument("--layers", type=int)
    p.add_argument("--quant", choices=("none", "fp8"), default="none", help="fp8: each rank's shard in e4m3 (Ada/Hopper)")
    p.add_argument("--world-sizes", default="2")
    p.add_argument("--context", type=int, default=2048)
    p.add_argument("--tokens", type=int, default=32)
    p.add_argument("--keystroke", type=int, default=32768, help="document tokens of the keystroke figure (0: skip)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--cpu", action="store_true", help="gloo on CPU: the script's smoke test (tiny shapes)")
    p.add_argument("--json-out", type=Path)
    args = p.parse_args()
    sizes = [int(n) for n in args.world_sizes.split(",")]
    if not args.cpu and torch.cuda.device_count() < max(sizes):
        print(f"tp_decode.py: {max(sizes)} GPUs asked for, {torch.cuda.device_count()} visible", file=sys.stderr)
        return 2
    from loopcoder.engine.parallel import free_tcp_port

    rows = []
    for n in sizes:
        out = Path(f"/tmp/tp_decode_{os.getpid()}_{n}.json")
        mp.spawn(_rank, args=(n, free_tcp_port(), args, str(out)), nprocs=n, join=True)
        rows.append(json.loads(out.read_text()))
        out.unlink()
    device = "CPU (gloo)" if args.cpu else torch.cuda.get_device_name()
    print(f"\n{device}, torch {torch.__version__}; {args.model}"
          f"{f' ({args.layers} layers)' if args.layers else ''}, {'bf16' if args.quant == 'none' else args.quant + ' weights, bf16 activations'}, batch 1 at {args.context} tokens of context\n")
    print("| GPUs | weights/GPU GiB | all-reduce us (captured / eager) | roofline ms | graphs ms/token | share | eager ms/token | "
          "keystroke warm / full ms |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        k = r.get("keystroke")
        ks = f"{k['warm_ms']:.0f} / {k['full_ms']:,.0f} ({k['tokens']:,} tokens)" if k else "—"
        graphs = r.get("decode_ms_graphs", float("nan"))
        print(f"| {r['world_size']} | {r['weights_gib_per_gpu']:.1f} | {r['allreduce_us']:.1f} / "
              f"{r['eager_allreduce_us']:.1f} | {r['roofline_ms']:.2f} | "
              f"{graphs:.2f} | {r['roofline_ms'] / graphs:.0%} | {r['decode_ms_eager']:.2f} | {ks} |")
    if args.json_out:
        args.json_out.write_text(json.dumps({"device": device, "torch": torch.__version__, "command": " ".join(sys.argv),
                                             "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "rows": rows},
                                            indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
