"""The GPU path's five figures (issue 5), random weights in the published shapes, each against
its baseline in the same run.

1. decode   batch-1 ms/token: CUDA graphs + Triton kernels, eager + Triton, eager torch
            reference; against the memory roofline (bytes a token must stream / copy
            bandwidth measured in this run).
2. keystroke  a one-token edit at the cursor of a warm 8K / 32K-token document (prefix +
            a bounded suffix) to the first new token, against a full re-prefill.
3. prefill  cold prefill of 8K / 32K / 64K tokens against the compute floor (the step's
            FLOPs / bf16 matmul throughput measured in this run).
4. batch    aggregate decode tokens/s at batch 1, 8 and 32, graphs against eager.
5. kv       KV bytes per token and how many warm 8K-token documents fit beside the weights.

Run (one GPU):  python benchmarks/gpu_path.py --model 40b-loop [--layers 40] --json-out R.json
                python benchmarks/gpu_path.py --model 7b
Plot later, where matplotlib is:  python benchmarks/gpu_path.py --plot R.json --plot-to P.png

Bandwidth convention: a copy of N bytes moves 2N (read + write); the roofline divides the
bytes a token streams by that read + write rate, the rate the card sustains.
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

SHAPES = {
    # DESIGN.md's 40B-Loop shape (docs/examples/iquest-coder-40b-loop.config.json).
    "40b-loop": dict(model_type="iquestloopcoder", vocab_size=76800, hidden_size=5120, intermediate_size=27648,
                     num_hidden_layers=80, num_attention_heads=40, num_key_value_heads=8, head_dim=128,
                     rope_theta=500000.0, rms_norm_eps=1e-5, max_position_embeddings=131072,
                     tie_word_embeddings=False, loop_num=2, loop_window_size=64),
    # IQuest-Coder 7B: the same widths, 14 layers, no loop.
    # A tiny Loop model: the script's own smoke test on CPU (tests/benchmarks).
    "tiny-loop": dict(model_type="iquestloopcoder", vocab_size=512, hidden_size=64, intermediate_size=128,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                      rope_theta=10000.0, rms_norm_eps=1e-5, max_position_embeddings=4096,
                      tie_word_embeddings=False, loop_num=2, loop_window_size=8),
    "7b": dict(model_type="iquestcoder", vocab_size=76800, hidden_size=5120, intermediate_size=27648,
               num_hidden_layers=14, num_attention_heads=40, num_key_value_heads=8, head_dim=128,
               rope_theta=500000.0, rms_norm_eps=1e-5, max_position_embeddings=131072,
               tie_word_embeddings=False),
}
SUFFIX_TOKENS = 256  # the bounded suffix the LSP sends after the cursor
GiB = 1 << 30
DEVICE = "cuda"


def sync() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def copy_bandwidth() -> float:
    """Device-to-device copy of 2 GiB: bytes read + written per second, median of 10."""
    size = 2 * GiB if DEVICE == "cuda" else 64 << 20
    a = torch.empty(size, dtype=torch.uint8, device=DEVICE)
    b = torch.empty_like(a)
    times = []
    for i in range(13):
        sync()
        t = time.perf_counter()
        b.copy_(a)
        sync()
        if i >= 3:
            times.append(time.perf_counter() - t)
    del a, b
    return 2 * size / statistics.median(times)


def matmul_flops() -> float:
    """bf16 GEMM throughput (8192^3), FLOP/s, median of 10: the compute floor's rate."""
    n = 8192 if DEVICE == "cuda" else 512
    a = torch.randn(n, n, dtype=torch.bfloat16, device=DEVICE)
    b = torch.randn(n, n, dtype=torch.bfloat16, device=DEVICE)
    times = []
    for i in range(13):
        sync()
        t = time.perf_counter()
        a @ b
        sync()
        if i >= 3:
            times.append(time.perf_counter() - t)
    return 2 * n**3 / statistics.median(times)


class Setup:
    def __init__(self, args):
        from loopcoder.engine.config import ModelConfig
        from loopcoder.engine.loader import random_model
        from loopcoder.engine.quantization import QuantLinear, weight_bytes

        raw = dict(SHAPES[args.model])
        if args.layers:
            raw["num_hidden_layers"] = args.layers
        self.cfg = ModelConfig.from_dict(raw)
        self.bandwidth = copy_bandwidth()
        self.flops = matmul_flops()
        torch.manual_seed(0)
        t = time.perf_counter()
        # Quantized as each layer is drawn: 40B-Loop in FP8 never exists in bf16 (it fits an 80 GB card).
        self.model = random_model(self.cfg, torch.bfloat16, DEVICE, quant=args.quant)
        sync()
        self.init_s = time.perf_counter() - t
        self.weight_bytes = weight_bytes(self.model)
        cfg = self.cfg
        layers = self.model.model.layers
        self.layer_bytes = (sum(p.numel() * p.element_size() for p in layers.parameters())
                            + sum(m.weight_bytes() for m in layers.modules() if isinstance(m, QuantLinear)))
        self.head_bytes = self.model.lm_head.weight.numel() * 2
        self.layer_flops = 2 * sum(p.numel() for n, p in layers.named_parameters() if n.endswith("proj.weight"))
        self.layer_flops += 2 * sum(m.weight_q.shape[0] * m.weight_q.shape[1] for m in layers.modules()
                                    if isinstance(m, QuantLinear))
        self.kv_bytes_per_token = cfg.kv_bytes_per_token(2)
        self.rng = torch.Generator().manual_seed(1)

    def ids(self, n: int) -> list[int]:
        return torch.randint(0, self.cfg.vocab_size, (n,), generator=self.rng).tolist()

    def engine(self, tokens: int, *, graphs: bool = True, chunk: int = 4096):
        """An engine whose KV pool holds `tokens` tokens."""
        from loopcoder.engine.engine import Engine, EngineConfig

        budget = tokens * self.kv_bytes_per_token
        return Engine(self.model, None, EngineConfig(device=DEVICE, dtype=torch.bfloat16, kv_budget_bytes=budget,
                                                     prefill_chunk=chunk, step_tokens=chunk, cuda_graphs=graphs))

    def decode_floor_ms(self, context: int, batch: int = 1) -> float:
        """Bytes one decode step must stream / copy bandwidth: each loop reads the decoder
        weights once, the LM head is read once, each sequence reads its K/V."""
        streamed = self.cfg.loop_num * self.layer_bytes + self.head_bytes + batch * context * self.kv_bytes_per_token
        return 1000 * streamed / self.bandwidth

    def prefill_flops(self, tokens: int) -> float:
        """FLOPs of a cold prefill: the decoder's matmuls per token and loop, causal attention
        per loop (loop >= 2 also attends to its window), one row of logits."""
        cfg = self.cfg
        linear = self.layer_flops  # 2 FLOPs per weight per token
        width = cfg.num_attention_heads * cfg.head_dim
        causal = 2 * 2 * width * tokens * (tokens + 1) / 2  # QK^T and PV over the causal triangle
        window = 2 * 2 * width * tokens * min(cfg.loop_window_size or 0, tokens)
        per_loop = cfg.num_hidden_layers * causal
        extra = (cfg.loop_num - 1) * cfg.num_hidden_layers * window
        return cfg.loop_num * linear * tokens + cfg.loop_num * per_loop + extra + 2 * self.head_bytes / 2


def release() -> None:
    """Free the engines the caller dropped (engine and scheduler refer to each other)."""
    gc.collect()
    if DEVICE == "cuda":
        torch.cuda.empty_cache()


def decode_ms(engine, setup: Setup, key: str, context: int, tokens: int) -> float:
    from loopcoder.engine.sampling import SamplingParams

    ids = setup.ids(context)
    engine.prefill(key, ids)
    params = SamplingParams(max_new_tokens=tokens, ignore_eos=True)
    engine.generate_for(key, ids + [1], params)  # warm-up: compiles kernels, captures graphs
    runs = []
    for extra in range(3):
        r = engine.generate_for(key, ids + [2 + extra], params)
        runs.append(1000 * (r.timings.total_s - r.timings.first_token_s) / (tokens - 1))
    return statistics.median(runs)


def figure_decode(setup: Setup, args) -> dict:
    context = args.decode_context
    floor = setup.decode_floor_ms(context)
    rows = {}
    for name, graphs, mode, tokens in (("graphs+triton", True, "", args.tokens), ("eager+triton", False, "", args.tokens),
                                       ("eager torch", False, "torch", max(8, args.tokens // 4))):
        os.environ["LOOPCODER_KERNELS"] = mode
        engine = setup.engine(context + 4 * tokens + 64, graphs=graphs)
        rows[name] = decode_ms(engine, setup, "doc", context, tokens)
        del engine
        release()
    os.environ.pop("LOOPCODER_KERNELS", None)
    return {"context": context, "roofline_ms": floor, "ms_per_token": rows}


def first_token_s(engine, key: str, ids: list[int]) -> float:
    from loopcoder.engine.sampling import SamplingParams

    sync()
    t = time.perf_counter()
    engine.generate_for(key, ids, SamplingParams(max_new_tokens=1, ignore_eos=True))
    return time.perf_counter() - t


def figure_keystroke(setup: Setup, args) -> dict:
    out = {}
    for length in args.keystroke:
        engine = setup.engine(2 * (length + SUFFIX_TOKENS) + 256)
        prefix, suffix = setup.ids(length), setup.ids(SUFFIX_TOKENS)
        first_token_s(engine, "doc", prefix + suffix)  # the document is open and warm
        warm = []
        for i in range(args.repeats):
            prefix = prefix + [100 + i]  # one keystroke at the cursor: the suffix moves by one token
            warm.append(first_token_s(engine, "doc", prefix + suffix))
        engine.close("doc", keep_cached=False)
        full = []
        for i in range(2):
            ids = setup.ids(length + 1 + SUFFIX_TOKENS)
            full.append(first_token_s(engine, f"cold{i}", ids))
            engine.close(f"cold{i}", keep_cached=False)
        out[length] = {"warm_ms": 1000 * statistics.median(warm), "full_ms": 1000 * statistics.median(full)}
        del engine
        release()
    return out


def figure_prefill(setup: Setup, args) -> dict:
    out = {}
    for length in args.prefill:
        engine = setup.engine(length + 64)
        first_token_s(engine, "warm", setup.ids(min(length, 4096)))  # kernels compiled outside the timing
        engine.close("warm", keep_cached=False)
        seconds = first_token_s(engine, "doc", setup.ids(length))
        floor = setup.prefill_flops(length) / setup.flops
        out[length] = {"s": seconds, "floor_s": floor, "tokens_per_s": length / seconds}
        del engine
        release()
    return out


def aggregate_tokens_per_s(engine, setup: Setup, batch: int, context: int, tokens: int) -> float:
    from loopcoder.engine.api import GenerationResult, Usage
    from loopcoder.engine.sampling import FinishReason
    from loopcoder.engine.sampling import SamplingParams
    from loopcoder.engine.scheduler import Work

    docs = [setup.ids(context) for _ in range(batch)]
    for i, ids in enumerate(docs):
        engine.prefill(f"b{i}", ids)
    params = SamplingParams(max_new_tokens=tokens, ignore_eos=True)

    def run(extra: int) -> float:
        works = [Work(f"b{i}", ids + [extra], GenerationResult([], "", FinishReason.CANCELLED, Usage()), params)
                 for i, ids in enumerate(docs)]
        sync()
        t = time.perf_counter()
        with engine._lock:
            for w in works:
                engine.scheduler.submit(w)
        for w in works:
            engine.scheduler.drive(w)
        elapsed = time.perf_counter() - t
        return sum(len(w.result.token_ids) for w in works) / elapsed

    run(1)  # warm-up: graphs of this batch captured
    return statistics.median(run(2 + i) for i in range(2))


def figure_batch(setup: Setup, args) -> dict:
    out = {}
    for graphs in (True, False):
        name = "graphs+triton" if graphs else "eager+triton"
        out[name] = {}
        for batch in args.batches:
            engine = setup.engine(batch * (args.batch_context + 3 * args.tokens + 32), graphs=graphs)
            out[name][batch] = aggregate_tokens_per_s(engine, setup, batch, args.batch_context, args.tokens)
            del engine
            release()
    return out


def figure_kv(setup: Setup) -> dict:
    if DEVICE != "cuda":
        return {"kv_bytes_per_token": setup.kv_bytes_per_token, "free_gib": float("nan"), "total_gib": float("nan"),
                "weights_gib": setup.weight_bytes / GiB, "docs_8k": 0}
    free, total = torch.cuda.mem_get_info()
    reserve = 4 * GiB  # activations, graphs, allocator slack
    per_doc = 8192 * setup.kv_bytes_per_token
    return {"kv_bytes_per_token": setup.kv_bytes_per_token, "free_gib": free / GiB, "total_gib": total / GiB,
            "weights_gib": setup.weight_bytes / GiB, "docs_8k": int(max(0, free - reserve) // per_doc)}


def report(r: dict) -> None:
    print(f"\n{r['device']}, torch {r['torch']}; {r['model']} ({r['layers']} layers, loop {r['loop_num']}), bf16 activations, "
          f"weights {r['weights_gib']:.1f} GiB; copy bandwidth {r['bandwidth'] / 1e12:.2f} TB/s (read + write), "
          f"bf16 GEMM {r['flops'] / 1e12:.0f} TFLOP/s\n")
    if "decode" in r:
        d = r["decode"]
        print(f"1. batch-1 decode at {d['context']} tokens of context; roofline {d['roofline_ms']:.2f} ms/token\n")
        print("| path | ms/token | share of roofline |\n|---|---|---|")
        for name, ms in d["ms_per_token"].items():
            print(f"| {name} | {ms:.2f} | {d['roofline_ms'] / ms:.0%} |")
    if "keystroke" in r:
        print("\n2. keystroke -> first token (one-token edit at the cursor, 256-token suffix)\n")
        print("| document | warm session ms | full re-prefill ms | ratio |\n|---|---|---|---|")
        for length, k in r["keystroke"].items():
            print(f"| {int(length):,} | {k['warm_ms']:.1f} | {k['full_ms']:.0f} | {k['full_ms'] / k['warm_ms']:.0f}x |")
    if "prefill" in r:
        print("\n3. cold prefill\n")
        print("| tokens | seconds | tokens/s | compute floor s | floor / measured |\n|---|---|---|---|---|")
        for length, p in r["prefill"].items():
            print(f"| {int(length):,} | {p['s']:.2f} | {p['tokens_per_s']:,.0f} | {p['floor_s']:.2f} | "
                  f"{p['floor_s'] / p['s']:.0%} |")
    if "batch" in r:
        print("\n4. aggregate decode tokens/s\n")
        names = list(r["batch"])
        print("| batch | " + " | ".join(names) + " | graphs: x batch 1 |\n|---|" + "---|" * (len(names) + 1))
        first = r["batch"][names[0]]
        base = first.get("1") or first.get(1)
        for batch in first:
            cells = " | ".join(f"{r['batch'][n][batch]:,.0f}" for n in names)
            print(f"| {batch} | {cells} | {first[batch] / base:.1f}x |")
    if "kv" in r:
        k = r["kv"]
        print(f"\n5. KV: {k['kv_bytes_per_token'] / 1024:.0f} KiB per token; {k['free_gib']:.1f} GiB free beside "
              f"{k['weights_gib']:.1f} GiB of weights -> {k['docs_8k']} warm 8K-token documents")


def plot(r: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    if "decode" in r:
        d = r["decode"]
        names = list(d["ms_per_token"])
        axes[0].bar(names + ["roofline"], [d["ms_per_token"][n] for n in names] + [d["roofline_ms"]],
                    color=["C0", "C1", "C2", "gray"])
        axes[0].set_ylabel("ms / token (batch 1)")
        axes[0].set_title(f"decode, {r['model']} {r['layers']} layers")
    if "keystroke" in r:
        lengths = list(r["keystroke"])
        x = range(len(lengths))
        axes[1].bar([i - 0.2 for i in x], [r["keystroke"][n]["warm_ms"] for n in lengths], 0.4, label="warm session")
        axes[1].bar([i + 0.2 for i in x], [r["keystroke"][n]["full_ms"] for n in lengths], 0.4, label="full re-prefill")
        axes[1].set_xticks(list(x), [f"{int(n):,} tokens" for n in lengths])
        axes[1].set_yscale("log")
        axes[1].set_ylabel("keystroke -> first token, ms")
        axes[1].legend()
    if "batch" in r:
        for name, rows in r["batch"].items():
            axes[2].plot([int(b) for b in rows], list(rows.values()), marker="o", label=name)
        axes[2].set_xlabel("batch")
        axes[2].set_ylabel("aggregate tokens/s")
        axes[2].legend()
    fig.suptitle(f"{r['device']}, {r['date']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"plot: {path}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=sorted(SHAPES), default="7b")
    p.add_argument("--layers", type=int, help="keep this many layers (40 of 80 fit an 80 GB card)")
    p.add_argument("--quant", choices=("none", "fp8"), default="none", help="fp8: e4m3 weights (Ada/Hopper)")
    p.add_argument("--figures", default="decode,keystroke,prefill,batch,kv")
    p.add_argument("--tokens", type=int, default=64, help="decoded tokens per measurement")
    p.add_argument("--decode-context", type=int, default=2048)
    p.add_argument("--keystroke", default="8192,32768")
    p.add_argument("--prefill", default="8192,32768,65536")
    p.add_argument("--batches", default="1,8,32")
    p.add_argument("--batch-context", type=int, default=2048)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json-out", type=Path)
    p.add_argument("--plot", type=Path, help="plot an earlier --json-out instead of measuring")
    p.add_argument("--plot-to", type=Path)
    p.add_argument("--cpu", action="store_true", help="run on the CPU (the script's smoke test, tiny shapes only)")
    args = p.parse_args()
    if args.plot:
        r = json.loads(args.plot.read_text())
        report(r)
        if args.plot_to:
            plot(r, args.plot_to)
        return 0
    global DEVICE
    if args.cpu:
        DEVICE = "cpu"
    elif not torch.cuda.is_available():
        print("gpu_path.py measures a CUDA device; none is visible here (--cpu runs the smoke test)", file=sys.stderr)
        return 2
    args.keystroke = [int(x) for x in args.keystroke.split(",") if x]
    args.prefill = [int(x) for x in args.prefill.split(",") if x]
    args.batches = [int(x) for x in args.batches.split(",") if x]
    figures = set(args.figures.split(","))
    setup = Setup(args)
    r = {"device": torch.cuda.get_device_name() if DEVICE == "cuda" else "CPU", "torch": torch.__version__, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
         "model": args.model + ("" if args.quant == "none" else f" {args.quant}"), "layers": setup.cfg.num_hidden_layers, "loop_num": setup.cfg.loop_num,
         "weights_gib": setup.weight_bytes / GiB, "bandwidth": setup.bandwidth, "flops": setup.flops,
         "init_s": setup.init_s, "command": " ".join(sys.argv)}
    steps = [("kv", lambda: figure_kv(setup)), ("decode", lambda: figure_decode(setup, args)),
             ("keystroke", lambda: figure_keystroke(setup, args)), ("prefill", lambda: figure_prefill(setup, args)),
             ("batch", lambda: figure_batch(setup, args))]
    for name, run in steps:
        if name not in figures:
            continue
        t = time.perf_counter()
        try:
            r[name] = run()
        except Exception as exc:  # a figure that fails (memory, time) leaves the others
            r[name + "_error"] = f"{type(exc).__name__}: {exc}"
            print(f"{name}: {r[name + '_error']}", file=sys.stderr)
            gc.collect()
            torch.cuda.empty_cache()
        print(f"[{name}: {time.perf_counter() - t:.0f} s]", file=sys.stderr, flush=True)
        if args.json_out:
            args.json_out.write_text(json.dumps(r, indent=1))
    report(r)
    if args.plot_to:
        try:
            plot(r, args.plot_to)
        except ImportError:
            print("matplotlib is not installed: plot later with --plot", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
