"""FP8 projections at decode row counts: the Triton GEMV for one row (kernels/fp8_linear.py)
against bf16 cuBLAS, torch._scaled_mm with Triton-quantized rows (the path of 2+ rows),
_scaled_mm with the torch-op quantization it replaced, and the copy roofline of the weight
bytes; and a sweep of the GEMV's tilings, to check its launch heuristic against the best.

Each timing is a CUDA graph of `--calls` products cycling over enough weight copies that
none is served from L2, replayed 20 times; the median per product is reported.

Run:  python benchmarks/fp8_gemv.py [--rows 1,2,8] [--json-out R.json] [--plot-to P.png]
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from pathlib import Path

import torch

# 40B-Loop / 7B projections as the engine runs them (q/k/v and gate/up joined).
SHAPES = {"qkv": (7168, 5120), "o": (5120, 5120), "gate_up": (55296, 5120), "down": (5120, 27648),
          # one rank's shards over 2 GPUs (column-parallel rows, row-parallel inputs halved)
          "qkv_tp2": (3584, 5120), "o_tp2": (5120, 2560), "gate_up_tp2": (27648, 5120), "down_tp2": (5120, 13824)}
L2_BYTES = 64 << 20


def graph_time(fn, calls: int) -> float:
    """Seconds per fn() call: `calls` calls captured in one graph, median of 20 replays."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for i in range(3):
            fn(i)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for i in range(calls):
            fn(i)
    graph.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(20):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1000 / calls)
    return statistics.median(times)


def copy_bandwidth() -> float:
    a = torch.empty(2 << 30, dtype=torch.uint8, device="cuda")
    b = torch.empty_like(a)
    return 2 * a.numel() / graph_time(lambda i: b.copy_(a), 5)


def plot(r: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(r["rows"])
    fig, ax = plt.subplots(figsize=(12, 4.5))
    series = [("roofline_us", "FP8 roofline"), ("bf16_us", "bf16 cuBLAS"), ("scaled_mm_torch_quant_us", "_scaled_mm, torch quant"),
              ("scaled_mm_triton_quant_us", "_scaled_mm, Triton quant"), ("fp8_linear_us", "fp8_linear (GEMV for 1 row)")]
    width = 0.8 / len(series)
    for j, (key, label) in enumerate(series):
        ax.bar([i + j * width for i in range(len(keys))], [r["rows"][k][key] for k in keys], width, label=label)
    ax.set_xticks([i + 0.4 for i in range(len(keys))], keys, rotation=30)
    ax.set_ylabel("us per product")
    ax.set_title(f"FP8 projections at decode rows, {r['device']}, {r['date']}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"plot: {path}")


def main() -> int:
    from loopcoder.kernels import fp8_linear as f

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", default="1,2,8")
    p.add_argument("--shapes", default="qkv,o,gate_up,down", help=f"of {', '.join(SHAPES)}")
    p.add_argument("--calls", type=int, default=24)
    p.add_argument("--no-sweep", action="store_true")
    p.add_argument("--json-out", type=Path)
    p.add_argument("--plot-to", type=Path)
    p.add_argument("--plot", type=Path, help="plot an earlier --json-out instead of measuring (needs --plot-to)")
    args = p.parse_args()
    if args.plot:
        plot(json.loads(args.plot.read_text()), args.plot_to or args.plot.with_suffix(".png"))
        return 0
    if not torch.cuda.is_available():
        print("fp8_gemv.py measures a CUDA device; none is visible here", file=sys.stderr)
        return 2
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    bandwidth = copy_bandwidth()
    r = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
         "bandwidth": bandwidth, "command": " ".join(sys.argv), "rows": {}}
    print(f"{r['device']}, torch {r['torch']}; copy bandwidth {bandwidth / 1e12:.2f} TB/s (read + write)\n")

    sweep = [f.GemvLaunch(block_n=bn, block_k=bk, split_k=sk, num_warps=w)
             for bn, bk, sk, w in itertools.product((4, 8, 16), (512, 1024, 2048), (1, 2), (4, 8))]
    header = "| shape | rows | roofline us | bf16 cuBLAS us | scaled_mm + torch quant us | scaled_mm + Triton quant us | Triton GEMV us | GEMV, best tiling us | best tiling | fp8_linear / roofline |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for name in args.shapes.split(","):
        n, k = SHAPES[name]
        copies = max(2, -(-2 * L2_BYTES // (n * k)))
        w16 = [torch.randn(n, k, device="cuda", dtype=torch.bfloat16) * 0.02 for _ in range(copies)]
        w8 = [f.quantize_fp8(w) for w in w16]
        for rows in (int(x) for x in args.rows.split(",")):
            x = torch.randn(rows, k, device="cuda", dtype=torch.bfloat16)
            roofline = n * k / bandwidth  # one byte per weight at the copy rate (read + write bytes per second)

            def timed(fn):
                try:
                    return graph_time(fn, args.calls)
                except Exception as exc:  # a tiling the compiler refuses
                    print(f"  {name} rows {rows}: {type(exc).__name__}: {str(exc)[:120]}", file=sys.stderr)
                    return float("nan")

            def old(i):
                xq, sx = f.quantize_rows_ref(x)
                return torch._scaled_mm(xq, w8[i % copies].q.T, scale_a=sx, scale_b=w8[i % copies].scale, out_dtype=torch.bfloat16)

            def new(i):
                xq, sx = f.quantize_rows(x)
                return torch._scaled_mm(xq, w8[i % copies].q.T, scale_a=sx, scale_b=w8[i % copies].scale, out_dtype=torch.bfloat16)

            row = {"roofline_us": 1e6 * roofline,
                   "bf16_us": 1e6 * timed(lambda i: torch.nn.functional.linear(x, w16[i % copies])),
                   "scaled_mm_torch_quant_us": 1e6 * timed(old), "scaled_mm_triton_quant_us": 1e6 * timed(new)}
            if rows == 1:
                heuristic = f.gemv_launch(n, k, sms)
                row["heuristic"] = str(heuristic)
                row["gemv_us"] = 1e6 * timed(lambda i: f.fp8_gemv(x, w8[i % copies], launch=heuristic))
                tried = {} if args.no_sweep else {
                    str(launch): 1e6 * timed(lambda i: f.fp8_gemv(x, w8[i % copies], launch=launch)) for launch in sweep}
                ok = {key: us for key, us in tried.items() if us == us}
                best = min(ok, key=ok.get) if ok else row["heuristic"]
                row["best"], row["best_us"] = best, ok.get(best, row["gemv_us"])
                row["top5"] = sorted(ok.items(), key=lambda kv: kv[1])[:5]
                ref = f.fp8_linear_ref(x, w8[0]).float()
                row["rel_err"] = ((f.fp8_gemv(x, w8[0], launch=heuristic).float() - ref).norm() / ref.norm()).item()
                if row["rel_err"] > 5e-3:
                    print(f"  WRONG: relative error {row['rel_err']:.2e}", file=sys.stderr)
            else:
                row.update(gemv_us=float("nan"), best_us=float("nan"), best="")
            row["fp8_linear_us"] = row["gemv_us"] if rows == 1 else row["scaled_mm_triton_quant_us"]
            r["rows"][f"{name}/{rows}"] = row
            print(f"| {name} {n}x{k} | {rows} | {row['roofline_us']:.1f} | {row['bf16_us']:.1f} | {row['scaled_mm_torch_quant_us']:.1f} | "
                  f"{row['scaled_mm_triton_quant_us']:.1f} | {row['gemv_us']:.1f} | {row['best_us']:.1f} | {row['best'].replace('GemvLaunch', '')} | "
                  f"{row['roofline_us'] / row['fp8_linear_us']:.0%} |", flush=True)
        del w16, w8
        torch.cuda.empty_cache()
    if args.json_out:
        args.json_out.write_text(json.dumps(r, indent=1))
    if args.plot_to:
        plot(r, args.plot_to)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
